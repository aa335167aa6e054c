"""Public benchmark files read as they are published, with the options docs/evaluation.md gives.

tests/data/formats/ holds a dozen small files recreated from the benchmarks' papers (invented
problems, the published field layout): SVAMP and ASDiv (a question over two fields; ASDiv's
`9 (apples)` golds), AQuA, SAT-math and gaokao-QA (options appended to the question), MMLU-STEM
(a 0-based option index as the gold), OlympiadBench (a list of `$...$` answers), Minerva (units
after the box), GSM-Hard and MAWPS (float targets), CARP (spaced LaTeX), gaokao 2023 (English).
For each: the question reads as the paper shows it, every gold written as a model answers
(`\\boxed{gold}`) scores 1, a natural correct answer scores 1 and a wrong one 0. Every file in
../shared/data passes the same gold check with its documented options.
"""

import json
from pathlib import Path

import pytest

from delta_rlvr.cli import main
from delta_rlvr.data import check_golds_score_themselves
from delta_rlvr.evaluation.benchmarks import DataOptions, resolve_benchmark
from delta_rlvr.evaluation.runner import PAPER_MAX_NEW_TOKENS, default_max_new_tokens

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

# file, options, (row, a correct answer, a wrong answer), a piece the rendered question holds
CASES = {
    "svamp": ("svamp.json", DataOptions(answer_field="Answer", question_template="{Body} {Question}"),
              (0, r"\boxed{15}", r"\boxed{16}"), "in the morning. How many muffins are left?"),
    "asdiv": ("asdiv.jsonl", DataOptions(question_template="{body} {question}"),
              (0, r"\boxed{11}", r"\boxed{11 \text{ or more}}"), "are in a jar. How many marbles"),
    "aqua": ("aqua.jsonl", DataOptions(answer_field="correct", answer_format="choice", options_field="options"),
             (0, "The answer is (C).", r"\boxed{C or D}"), "km/h?\n\nA)40\nB)50\nC)60\nD)70\nE)80"),
    "mmlu_stem": ("mmlu_stem.jsonl", DataOptions(options_field="choices", choice_index=0),
                  (0, r"\boxed{B}", r"\boxed{1}"), "x^3?\n\nA. x^2\nB. 3x^2\nC. 3x\nD. x^3/3"),
    "olympiadbench": ("olympiadbench.json", DataOptions(answer_field="final_answer", answer_format="list"),
                      (0, r"\boxed{2, -2}", r"\boxed{2}"), "x^2 = 4"),
    "minerva": ("minerva.jsonl", DataOptions(question_field="problem", answer_field="solution", answer_format="boxed"),
                (0, r"\boxed{1.6 \text{ cm}}", r"\boxed{1.7 \text{ cm}}"), "focal length 72 m"),
    "gsm_hard": ("gsm_hard.jsonl", DataOptions(question_field="input", answer_field="target"),
                 (0, r"\boxed{3200952}", r"\boxed{3200953}"), "1600483 eggs"),
    "mawps": ("mawps.jsonl", DataOptions(question_field="input", answer_field="target"),
              (0, r"\boxed{9}", r"\boxed{\geq 9}"), "bottle caps"),
    "carp_en": ("carp_en.jsonl", DataOptions(question_field="content"),
                (0, r"\boxed{4a^2-b^2}", r"\boxed{4a^2+b^2}"), "____"),
    "gaokao_qa": ("gaokao_qa.jsonl", DataOptions(answer_field="label", answer_format="choice", options_field="options"),
                  (0, r"\boxed{B}", r"\boxed{(A) (B) (C) (D)}"), "( )\n\nA. $\\{1\\}$\nB. $\\{2\\}$"),
    "sat_math": ("sat_math.jsonl", DataOptions(answer_field="Answer", answer_format="choice", options_field="options"),
                 (0, r"\boxed{C}", r"\boxed{D}"), "x?\n\nA) 1 B) 2 C) 3 D) 4"),
    "gaokao2023en": ("gaokao2023en.jsonl", DataOptions(), (1, r"\boxed{-1}", r"\boxed{1}"), "Find $|a|^2-|b|^2$"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_public_format_loads_and_its_golds_score_as_a_model_writes_them(name):
    file, options, (row, right, wrong), question_piece = CASES[name]
    bench = resolve_benchmark(f"{name}={FORMATS / file}", options=options)
    assert question_piece in bench.records[row].question
    rate, warning = check_golds_score_themselves(list(bench.records), bench.answer_format)
    assert (rate, warning) == (1.0, None)
    verdicts = bench.scorer([f"Let me check. {right}", f"Let me check. {wrong}"], [bench.records[row]] * 2)
    assert [v.correct for v in verdicts] == [True, False], verdicts


def test_asdiv_golds_lose_their_parenthesised_unit_and_mmlu_indices_become_letters():
    asdiv = resolve_benchmark(f"asdiv={FORMATS / 'asdiv.jsonl'}", options=CASES["asdiv"][1])
    mmlu = resolve_benchmark(f"mmlu={FORMATS / 'mmlu_stem.jsonl'}", options=CASES["mmlu_stem"][1])
    assert [r.gold for r in asdiv.records] == ["11", "2.3", "6"]
    assert [r.gold for r in mmlu.records] == ["B", "C", "C"] and mmlu.answer_format == "choice"
    one_based = resolve_benchmark(f"mmlu={FORMATS / 'mmlu_stem.jsonl'}", options=DataOptions(options_field="choices", choice_index=1))
    assert [r.gold for r in one_based.records] == ["A", "B", "B"]


def test_bad_format_options_exit_2_naming_the_field_and_the_fix(tmp_path, capsys):
    out = str(tmp_path / "o")
    code = main(["eval", "embedded:arith-tiny", "--benchmarks", f"svamp={FORMATS / 'svamp.json'}", "--answer-field", "Answer",
                 "--question-template", "{Body} {Text}", "--output-dir", out])
    err = capsys.readouterr().err
    assert code == 2 and "field 'Text': missing, and the question template" in err and "Traceback" not in err
    rows = [{"question": "q", "choices": ["a", "b"], "answer": 3}]
    path = tmp_path / "idx.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = main(["eval", "embedded:arith-tiny", "--benchmarks", str(path), "--options-field", "choices", "--choice-index", "0",
                 "--output-dir", out])
    err = capsys.readouterr().err
    assert code == 2 and "option index 3 is outside the 2 options" in err and "Traceback" not in err


def test_golds_that_do_not_score_against_themselves_are_warned_about_with_examples(tmp_path, capsys):
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(8)] + [{"question": "q8", "answer": "\\frac{1}{"},
                                                                         {"question": "q9", "answer": "x^{2"}]
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    bench = resolve_benchmark(f"cut={path}")
    err = capsys.readouterr().err
    assert "warning: benchmark cut: 2 of 10 golds (20.0%) score 0 against themselves" in err
    assert "cut-9: gold '\\\\frac{1}{'" in err and len(bench.records) == 10
    assert check_golds_score_themselves(list(bench.records)[:8], "auto") == (1.0, None)


def test_the_cli_reads_a_two_field_question_as_typed(tmp_path, capsys):
    code = main(["eval", "embedded:arith-tiny", "--benchmarks", f"svamp={FORMATS / 'svamp.json'}", "--answer-field", "Answer",
                 "--question-template", "{Body} {Question}", "--limit", "1", "--k", "1", "--output-dir", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0 and "| svamp | 1 |" in out and "cut at limit" in out


class _Source:
    run_config = None
    is_embedded = False


def test_paper7_defaults_to_the_papers_generation_length_and_others_keep_1024():
    assert PAPER_MAX_NEW_TOKENS == 30_000
    assert default_max_new_tokens(_Source(), ["paper7"]) == 30_000
    assert default_max_new_tokens(_Source(), ["gsm8k"]) == 1024


# Every file in ../shared/data with its documented options (docs/evaluation.md): built-ins by
# name, and the extra fields a user may point at (MATH-500's worked solutions, GSM8K's train split).
SHARED = {
    "gsm8k": ("gsm8k", DataOptions()),
    "gsm8k-train": ("gsm8k-train=gsm8k/train.jsonl", DataOptions(answer_format="hashes")),
    "math500": ("math500", DataOptions()),
    "math500-solutions": ("math500s=math500/test.jsonl", DataOptions(question_field="problem", answer_field="solution",
                                                                      answer_format="boxed")),
    "aime24": ("aime24", DataOptions()), "amc23": ("amc23", DataOptions()),
    **{name: (name, DataOptions()) for name in ("aime25", "aime26", "hmmt25feb", "hmmt25nov", "hmmt26feb", "brumo25", "smt25",
                                                 "cmimc25", "apex25")},
}  # fmt: skip


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="benchmark files live in ../shared/data")
@pytest.mark.parametrize("name", sorted(SHARED))
def test_every_shared_file_loads_and_its_golds_score_as_a_model_writes_them(name):
    spec, options = SHARED[name]
    if "=" in spec:
        label, relative = spec.split("=", 1)
        bench = resolve_benchmark(f"{label}={SHARED_DATA / relative}", options=options)
    else:
        bench = resolve_benchmark(spec, SHARED_DATA, options)
    records = list(bench.records)
    if name == "gsm8k-train":
        records = records[::10]  # 748 of 7,473: the suite stays fast; the whole file is in the fuzz benchmark
    rate, warning = check_golds_score_themselves(records, bench.answer_format)
    assert warning is None and rate >= 0.99, (name, rate, warning)
