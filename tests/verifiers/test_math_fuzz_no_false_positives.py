"""False-positive fuzz: for every gold of the shipped benchmarks, wrong answers built from it
(a digit or the sign changed; `pi`, `i`, `e`, `x`, `or more` appended to the right number; units
and hedges `or 7`, `and 5` appended to a wrong one) must all score 0.

GSM8K's 1,319 integer golds are covered by the same variants in
`benchmarks/compare_math_verify.py` (the whole fuzz, with raw math-verify side by side); here a
fixed sample of 150 keeps the suite fast, and every other file is fuzzed in full.
"""

import pytest

from delta_rlvr.data import BUILTIN_DATASETS, load_file
from delta_rlvr.verifiers import score_math
from delta_rlvr.verifiers.fuzz import perturb_digit, wrong_variants

FILES = sorted(name for name in BUILTIN_DATASETS if name != "deepmath")


def test_wrong_variants_of_a_number_are_the_documented_ones():
    kinds = [kind for kind, _ in wrong_variants("70")]
    assert [w for _, w in wrong_variants("70")][:4] == ["80", "-70", "70 pi", "70\\pi"]
    assert kinds.count("constant or word appended") == 8 and kinds.count("unit or hedge on a wrong answer") == 4
    assert perturb_digit("\\frac{1}{2}") == "\\frac{2}{2}" and perturb_digit("x") == "x+1"
    assert all(kind != "constant or word appended" for kind, _ in wrong_variants("\\sqrt{2}"))


@pytest.mark.parametrize("name", FILES)
def test_no_wrong_answer_built_from_a_gold_scores_correct(pool, shared_data, name, record_property):
    spec = BUILTIN_DATASETS[name]
    records, _ = load_file(shared_data / spec.data_file, spec.fields, source=name)
    if name == "gsm8k":
        records = records[::9][:150]
    cases = [(r.gold, wrong) for r in records for _, wrong in wrong_variants(r.gold)]
    responses = [f"Therefore, the final answer is $\\boxed{{{wrong}}}$." for _, wrong in cases]
    results = score_math(responses, [gold for gold, _ in cases], answer_format="boxed", pool=pool, timeout_s=10.0)
    false_positives = [(gold, wrong, r.detail) for (gold, wrong), r in zip(cases, results) if r.score != 0.0]
    record_property(f"{name}_fuzz_cases", len(cases))
    record_property(f"{name}_fuzz_false_positives", len(false_positives))
    print(f"\n{name}: {len(cases)} wrong answers from {len(records)} golds, {len(false_positives)} scored correct")
    assert false_positives == []
