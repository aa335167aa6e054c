"""Hard equivalences must score 1 and near misses must score 0 (gold first, through the pool)."""

import pytest

from delta_rlvr.verifiers import score_math

EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{14}{3}", r"\dfrac{14}{3}"),
    (r"\frac{1}{2}", r"\tfrac12"),
    ("1000000", "1,000,000"),
    (r"10,\!080", "10080"),
    (r"\$32,\!348", "32348"),
    ("5", r"5 \text{ cm}"),
    (r"5.4 \text{ cents}", "5.4"),
    (r"\frac{270}7\text{ degrees}", r"\frac{270}{7}"),
    (r"50\%", "50"),
    (r"10^\circ", "10"),
    ("5", "x = 5"),
    ("x=5", "5"),
    (r"x \in [-2,7]", "[-2, 7]"),
    (r"(-\infty, 0]", r"(-\infty,0]"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    (r"\{1,2\}", r"\{2,1\}"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
    (r"\frac{\pi}{2}", "pi/2"),
    (r"\sqrt{2}", "sqrt(2)"),
    ("e^{16}-1", "-1 + exp(16)"),
    ("27.0", "27"),
    (r"\text{(C)}", "C"),
    (r"\text{Evelyn}", "Evelyn"),
    ("y = 2x + 3", "y=3+2x"),
    (r"\frac{1}{3}", "0.3333333"),
    (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", r"\begin{pmatrix}-1&0\\0&-1\end{pmatrix}"),
]

NOT_EQUIVALENT = [
    ("3", "4"),
    ("1", "1.0001"),
    ("1e-7", "2e-7"),
    ("0.001", "0.0011"),
    (r"\frac{1}{3}", "0.333"),
    ("(1,2)", "(2,1)"),
    ("[2,5)", "(2,5)"),
    (r"2\sqrt{2}", r"\sqrt{2}"),
    (r"\frac{\pi}{2}", r"\pi"),
    (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", r"\begin{pmatrix} -2 & 0 \\ 0 & -1 \end{pmatrix}"),
    (r"\text{(C)}", "D"),
    ("-4", "4"),
    ("100", "1,000"),
]


def _score(pool, gold, pred):
    return score_math([f"The final answer is $\\boxed{{{pred}}}$."], [gold], pool=pool)[0]


@pytest.mark.parametrize(("gold", "pred"), EQUIVALENT)
def test_equivalent_answers_score_one(pool, gold, pred):
    result = _score(pool, gold, pred)
    assert (result.score, result.reason) == (1.0, "correct"), result


@pytest.mark.parametrize(("gold", "pred"), NOT_EQUIVALENT)
def test_different_answers_score_zero(pool, gold, pred):
    result = _score(pool, gold, pred)
    assert (result.score, result.reason) == (0.0, "wrong"), result


def test_missing_answer_is_unparsed_and_empty_gold_is_gold_unparsed(pool):
    results = score_math(["I am not sure.", r"\boxed{5}", r"\boxed{}"], ["5", "  ", "5"], pool=pool)
    assert [r.reason for r in results] == ["unparsed", "gold_unparsed", "unparsed"]
    assert [r.score for r in results] == [0.0, 0.0, 0.0]


def test_each_dataset_format_is_extracted_before_checking(pool):
    results = [
        score_math(["18 eggs\n#### 18"], ["18"], answer_format="hashes", pool=pool)[0],
        score_math(["work\nAnswer: \\frac{3}{4}"], ["0.75"], answer_format="answer_line", pool=pool)[0],
    ]
    assert [(r.reason, r.extracted) for r in results] == [("correct", "18"), ("correct", r"\frac{3}{4}")]


def test_caller_mistakes_raise_at_once():
    with pytest.raises(ValueError, match="one gold per prediction"):
        score_math(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="timeout_s"):
        score_math(["a"], ["a"], timeout_s=0)
