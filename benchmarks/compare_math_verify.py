"""score_math side by side with raw math-verify: agreement and false positives per category.

One run measures both graders on the same pairs:
1. the labelled cases of eight peers' own test files (math-verify, lighteval, NeMo-Skills,
   MARIO_EVAL, hendrycks/math, open-r1, simple-evals, Qwen2.5-Math;
   tests/verifiers/data/grader_cases.json, restated by scripts/harvest_grader_cases.py; only
   the in-scope ones: English, default precision and options, labels that follow the
   mathematics rather than one grader's policy); a bare-answer peer's prediction is boxed;
2. this project's hand-judged pairs per category (tests/verifiers/data/hand_judged.json) and
   its false-positive suite (tests/verifiers/test_math_false_positives.py: gamed answers, and
   the same shapes written right);
3. the false-positive fuzz: every gold of the shipped benchmark files in ../shared/data with
   its wrong variants (`delta_rlvr.verifiers.fuzz.wrong_variants`).
Raw math-verify is called as each grader calls it (`delta_rlvr.verifiers.reference`): both
texts through `parse` with the test's extraction targets, then `verify`. score_math gets the
prediction text and the gold with answer format "auto" ("choice" for multiple-choice cases,
the case's own format for hand-judged pairs), through a 2-worker pool.

    .venv/bin/python benchmarks/compare_math_verify.py [--data-dir ../shared/data] [--no-fuzz] [--json out.json]

Prints a markdown table (the one in docs/verifiers_and_data.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from delta_rlvr.verifiers import VerifierPool, score_math  # noqa: E402
from delta_rlvr.verifiers.fuzz import wrong_variants  # noqa: E402
from delta_rlvr.verifiers.reference import as_bare_gold, grader_case, raw_math_verify  # noqa: E402

DATA = ROOT / "tests" / "verifiers" / "data"


def labelled_cases() -> list[dict]:
    cases = []
    for row in json.loads((DATA / "grader_cases.json").read_text()):
        if row["in_scope"]:
            cases.append({**grader_case(row), "set": "graders' tests"})
    for row in json.loads((DATA / "hand_judged.json").read_text()):
        call = {"match_types": ["NativeLetters"]} if row["answer_format"] == "choice" else {"match_types": ["latex", "expr"]}
        grader = "lighteval" if row["answer_format"] == "choice" else "math-verify"
        cases.append({**row, "set": "hand-judged", "call": call, "grader": grader, "raw_gold": as_bare_gold(row["gold"]),
                      "response": row["pred"]})
    return cases


def false_positive_suite() -> list[dict]:
    """The gamed answers of tests/verifiers/test_math_false_positives.py (labelled 0) and the same
    shapes written right (labelled 1), boxed; raw math-verify gets the gold inside `$...$`."""
    sys.path.insert(0, str(ROOT / "tests" / "verifiers"))
    from test_math_false_positives import RIGHT, WRONG, _boxed

    cases = []
    for rows, expected in ((WRONG, 0), (RIGHT, 1)):
        for kind, gold, answer in rows:
            cases.append({"category": kind, "gold": gold, "pred": answer, "response": _boxed(answer), "expected": expected,
                          "answer_format": "boxed", "set": "false-positive suite", "call": {"match_types": ["latex", "expr"]},
                          "grader": "math-verify", "raw_gold": as_bare_gold(gold)})
    return cases


def score_ours(cases: list[dict], pool: VerifierPool, golds_key: str = "gold") -> list[int]:
    out = [0] * len(cases)
    by_format = defaultdict(list)
    for index, case in enumerate(cases):
        by_format[case["answer_format"]].append(index)
    for fmt, indices in by_format.items():
        results = score_math([cases[i]["response"] for i in indices], [cases[i][golds_key] for i in indices], answer_format=fmt,
                             pool=pool, timeout_s=10.0)
        for i, result in zip(indices, results):
            out[i] = int(result.score == 1.0)
    return out


def fuzz_cases(data_dir: Path) -> list[dict]:
    from delta_rlvr.data import BUILTIN_DATASETS, load_file

    cases = []
    for name, spec in sorted(BUILTIN_DATASETS.items()):
        path = data_dir / spec.data_file
        if name == "deepmath" or not path.is_file():
            continue
        records, _ = load_file(path, spec.fields, source=name)
        for record in records:
            for kind, wrong in wrong_variants(record.gold):
                response = f"Therefore, the final answer is $\\boxed{{{wrong}}}$."
                cases.append({"category": kind, "benchmark": name, "gold": record.gold, "pred": response, "response": response,
                              "answer_format": "boxed", "expected": 0, "call": {"match_types": ["latex", "expr"]},
                              "grader": "math-verify", "raw_gold": as_bare_gold(record.gold)})
    return cases


def table(cases: list[dict], ours: list[int], raw: list[int], title: str) -> str:
    rows = defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0])  # n, agree ours, agree raw, fp ours, fp raw, fn ours, fn raw
    for case, o, r in zip(cases, ours, raw):
        for key in (case["category"], "all"):
            row = rows[key]
            row[0] += 1
            row[1] += o == case["expected"]
            row[2] += r == case["expected"]
            row[3] += o == 1 and case["expected"] == 0
            row[4] += r == 1 and case["expected"] == 0
            row[5] += o == 0 and case["expected"] == 1
            row[6] += r == 0 and case["expected"] == 1
    lines = [f"**{title}**", "",
             "| category | pairs | agreement: score_math | raw math-verify | false positives: score_math | raw math-verify "
             "| false negatives: score_math | raw math-verify |", "|---|---|---|---|---|---|---|---|"]
    for key in sorted(rows, key=lambda k: (k == "all", k)):
        n, ao, ar, fo, fr, no, nr = rows[key]
        label = "**all**" if key == "all" else key
        lines.append(f"| {label} | {n} | {ao}/{n} ({100 * ao / n:.1f}%) | {ar}/{n} ({100 * ar / n:.1f}%) | {fo} | {fr} | {no} | {nr} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    parser.add_argument("--no-fuzz", action="store_true", help="skip the fuzz over every shipped gold (the slow part)")
    parser.add_argument("--json", help="write every case with both verdicts here")
    args = parser.parse_args()
    pool = VerifierPool(num_workers=2)
    pool.wait_ready()
    sets = [("labelled", labelled_cases() + false_positive_suite())]
    if not args.no_fuzz:
        sets.append(("fuzz", fuzz_cases(Path(args.data_dir))))
    dump = []
    for title, cases in sets:
        start = time.monotonic()
        ours = score_ours(cases, pool)
        middle = time.monotonic()
        raw = [int(raw_math_verify(c["raw_gold"], c["response"], c["call"], c["grader"])) for c in cases]
        end = time.monotonic()
        if title == "labelled":
            for subset in ("graders' tests", "hand-judged", "false-positive suite"):
                chosen = [i for i, c in enumerate(cases) if c["set"] == subset]
                print(table([cases[i] for i in chosen], [ours[i] for i in chosen], [raw[i] for i in chosen],
                            f"{subset} ({len(chosen)} pairs)") + "\n")
        else:
            print(table(cases, ours, raw, f"false-positive fuzz: every gold of the shipped benchmarks ({len(cases)} wrong answers)"))
            fp = [(c["benchmark"], c["gold"], c["pred"]) for c, o in zip(cases, ours) if o]
            print(f"\nscore_math false positives: {len(fp)}; where raw math-verify rejects: "
                  f"{sum(1 for c, o, r in zip(cases, ours, raw) if o and not r)}")
            for item in fp[:20]:
                print("  ", item)
        print(f"\n({title}: score_math {middle - start:.1f} s, raw math-verify {end - middle:.1f} s)\n")
        dump += [{**c, "ours": o, "raw": r} for c, o, r in zip(cases, ours, raw)]
    pool.close()
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
