"""Every gold answer of the shared benchmarks, written the way a model writes it, scores 1;
the same answer with one digit changed scores 0. Rates are printed and recorded per dataset."""

import pytest

from delta_rlvr.data import BUILTIN_DATASETS, SUITES, load_dataset_spec
from delta_rlvr.verifiers import score_math

# Every shipped benchmark file: the four classics and MathArena's nine (the paper's seven among them).
FILES = {name: spec.data_file for name, spec in BUILTIN_DATASETS.items() if name != "deepmath"}
assert set(SUITES["paper7"]) <= set(FILES)


def as_model_response(gold: str, answer_format: str) -> str:
    if answer_format == "hashes":
        return f"She has 16 - 3 - 4 = 9 left, so she makes 9 * 2 = 18 dollars.\n#### {gold}"
    return f"Let's verify the computation once more. Therefore, the final answer is $\\boxed{{{gold}}}$. I hope it is correct."


def restyled(gold: str) -> str:
    """How models often rewrite the same LaTeX: display fractions, no sizing commands."""
    return gold.replace(r"\frac", r"\dfrac").replace(r"\left", "").replace(r"\right", "")


def perturbed(gold: str) -> str:
    """Change the first digit (or append +1 when there is none): a different answer. The one
    shipped gold whose first digit can change without changing its value gets +1 (fuzz.py)."""
    from delta_rlvr.verifiers.fuzz import perturb_digit

    return perturb_digit(gold)


@pytest.mark.parametrize("name", sorted(FILES))
def test_gold_written_as_a_model_answer_scores_correct(pool, shared_data, name, record_property):
    records, _ = load_dataset_spec(name, path=shared_data / FILES[name])
    answer_format = BUILTIN_DATASETS[name].answer_format
    golds = [record.gold for record in records]
    if name in SUITES["paper7"]:
        assert len(golds) == (33 if name == "hmmt26feb" else 30)
    results = score_math([as_model_response(g, answer_format) for g in golds], golds, answer_format=answer_format, pool=pool)
    restyled_results = score_math(
        [as_model_response(restyled(g), answer_format) for g in golds], golds, answer_format=answer_format, pool=pool
    )
    rate = sum(r.score for r in results) / len(results)
    restyled_rate = sum(r.score for r in restyled_results) / len(results)
    record_property(f"{name}_gold_vs_gold_rate", rate)
    record_property(f"{name}_restyled_rate", restyled_rate)
    print(f"\n{name}: gold-vs-gold {rate:.4f} ({len(results)} answers), restyled {restyled_rate:.4f}")
    failures = [(g, r.reason, r.detail) for g, r in zip(golds, results) if r.score != 1.0]
    assert rate >= (1.0 if name in SUITES["paper7"] else 0.99), failures[:10]
    assert restyled_rate >= 0.99, [(g, r.reason) for g, r in zip(golds, restyled_results) if r.score != 1.0][:10]


@pytest.mark.parametrize("name", sorted(FILES))
def test_gold_with_one_digit_changed_scores_wrong(pool, shared_data, name, record_property):
    records, _ = load_dataset_spec(name, path=shared_data / FILES[name])
    answer_format = BUILTIN_DATASETS[name].answer_format
    golds = [record.gold for record in records]
    results = score_math(
        [as_model_response(perturbed(g), answer_format) for g in golds], golds, answer_format=answer_format, pool=pool
    )
    false_positives = [(g, r.extracted) for g, r in zip(golds, results) if r.score != 0.0]
    record_property(f"{name}_perturbed_false_positives", len(false_positives))
    assert false_positives == []
    assert all(r.reason == "wrong" for r in results), {r.reason for r in results}
