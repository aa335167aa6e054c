"""Throughput of `score_math` (checks per second) on real benchmark answers.

Run from the repo root:  .venv/bin/python benchmarks/bench_verifiers.py [--workers 2] [--repeat 2]
Reads ../shared/data (or --data DIR). Startup of the workers is excluded (the pool is
long-lived in training); everything else - extraction, pipes, checking - is included.
First, per core: score_math with one worker against raw math-verify in-process, on the same 500
MATH-500 pairs in the same run (the ratio the docs quote). Then the pool's workloads: GSM8K integers
as `#### n`; MATH-500 golds boxed as written, restyled (\\dfrac, no
\\left/\\right), equal values written so differently that math-verify must decide, golds with
one digit changed (wrong answers: the slowest path), and a "typical" mix of half
restyled-correct and half wrong answers from both sets.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from delta_rlvr.verifiers import VerifierPool, score_math


def perturbed(gold: str) -> str:
    digit = re.search(r"\d", gold)
    if digit is None:
        return gold + "+1"
    return gold[: digit.start()] + str((int(digit.group()) + 1) % 10) + gold[digit.end() :]


def restyled(gold: str) -> str:
    return gold.replace(r"\frac", r"\dfrac").replace(r"\left", "").replace(r"\right", "")


def boxed(answer: str) -> str:
    return f"Checking again, the result holds. The final answer is $\\boxed{{{answer}}}$."


def per_core_against_raw(math500: list[str], repeat: int) -> None:
    """One core each, same run, same 500 MATH-500 pairs (half restyled-correct, half one digit
    wrong): score_math through a 1-worker pool against raw math-verify called in-process as
    graders call it (`reference.raw_math_verify`: parse both texts, then verify)."""
    from delta_rlvr.verifiers.reference import as_bare_gold, raw_math_verify

    half = len(math500) // 2
    preds = [boxed(restyled(g)) for g in math500[:half]] + [boxed(perturbed(g)) for g in math500[half:]]
    raw_golds = [as_bare_gold(g) for g in math500]
    raw_math_verify(raw_golds[0], preds[0])  # imports and first-call caches excluded, as for the pool
    raw_rate = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        raw = [raw_math_verify(g, p) for g, p in zip(raw_golds, preds)]
        raw_rate = max(raw_rate, len(preds) / (time.perf_counter() - start))
    pool = VerifierPool(num_workers=1)
    assert pool.wait_ready(), "worker did not start"
    score_math([boxed("1")], ["1"], pool=pool)
    ours_rate = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        results = score_math(preds, math500, answer_format="boxed", pool=pool, timeout_s=5.0)
        ours_rate = max(ours_rate, len(preds) / (time.perf_counter() - start))
    pool.close()
    ours_correct = sum(r.score for r in results) / len(results)
    print(f"per core, 500 MATH-500 pairs (half correct restyled, half one digit wrong): score_math {ours_rate:.0f} pairs/s "
          f"(correct={ours_correct:.3f}), raw math-verify {raw_rate:.0f} pairs/s (correct={sum(raw) / len(raw):.3f}); "
          f"ratio {ours_rate / raw_rate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    gsm8k = [json.loads(line)["answer"].split("####")[-1].strip() for line in open(args.data / "gsm8k/test.jsonl")]
    math500 = [json.loads(line)["answer"] for line in open(args.data / "math500/test.jsonl")]
    half = len(math500) // 2
    # Equal values written differently enough that only math-verify decides (repeated 25 times,
    # so its parse caches help, as they do for the 8-16 samples per prompt of a rollout).
    hard = [(r"\frac{\pi}{2}", "pi/2"), (r"2\sqrt{2}", r"\sqrt{8}"), (r"\{1,2\}", r"\{2,1\}"), ("(1,2)", "(1, 2)"),
            ("y = 2x + 3", "y=3+2x"), (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
            (r"\text{(C)}", "C"), (r"\sqrt{2}", "sqrt(2)")] * 25  # fmt: skip
    workloads = {
        "gsm8k integers (#### n), correct": ([f"So 9 * 2 = 18.\n#### {g}" for g in gsm8k], gsm8k, "hashes"),
        "math500 boxed as written, correct": ([boxed(g) for g in math500], math500, "boxed"),
        "math500 restyled, correct": ([boxed(restyled(g)) for g in math500], math500, "boxed"),
        "equal but differently written (math-verify)": ([boxed(p) for _, p in hard], [g for g, _ in hard], "boxed"),
        "math500 one digit changed, wrong": ([boxed(perturbed(g)) for g in math500], math500, "boxed"),
        "typical mix (math500+gsm8k, half wrong)": (
            [boxed(restyled(g)) for g in math500[:half]] + [boxed(perturbed(g)) for g in math500[half:]]
            + [boxed(g) for g in gsm8k[:250]] + [boxed(perturbed(g)) for g in gsm8k[250:500]],
            math500 + gsm8k[:500],
            "boxed",
        ),
    }  # fmt: skip
    per_core_against_raw(math500, args.repeat)
    pool = VerifierPool(num_workers=args.workers)
    assert pool.wait_ready(), "workers did not start"
    score_math([boxed("1")], ["1"], pool=pool)
    print(f"workers={args.workers}  (startup excluded)")
    for name, (preds, golds, answer_format) in workloads.items():
        best = 0.0
        for _ in range(args.repeat):
            start = time.perf_counter()
            results = score_math(preds, golds, answer_format=answer_format, pool=pool, timeout_s=5.0)
            best = max(best, len(preds) / (time.perf_counter() - start))
        correct = sum(r.score for r in results) / len(results)
        timeouts = sum(r.reason == "timeout" for r in results)
        print(f"{name:44s} n={len(preds):5d}  {best:8.0f} checks/s  correct={correct:.3f}  timeouts={timeouts}")
    pool.close()


if __name__ == "__main__":
    main()
