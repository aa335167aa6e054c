"""Wrong answers a reward-hacking policy would try, one class at a time: each must score 0,
and the right answer written the same way must still score 1 (so a rule cannot pass by
refusing everything). Written before the fixes of issue 25; every class failed then.

Classes: text answers compared as products of letters (anagrams), percent magnitude, relative
tolerance on exact golds, currency, choice hedges, relations in the box, a different unit,
an intermediate box against the committed final answer, named parts in several boxes.
"""

import pytest

from delta_rlvr.verifiers import score_math


def _boxed(answer: str) -> str:
    return f"Working through it once more. The final answer is $\\boxed{{{answer}}}$."


def _score(pool, gold, response, answer_format="boxed"):
    return score_math([response], [gold], answer_format=answer_format, pool=pool, timeout_s=10.0)[0]


# (class, gold, wrong answer in the box)
WRONG = [
    ("anagram", r"\text{Amy}", r"\text{May}"),
    ("anagram", r"\text{Leon}", r"\text{Noel}"),
    ("anagram", r"\text{Tina}", r"\text{Nita}"),
    ("anagram", r"\text{Mary}", r"\text{Myra}"),
    ("anagram", r"\text{Alice}", r"\text{Celia}"),
    ("anagram", "Amy", "May"),
    ("anagram", r"\text{Amy}", "yaM"),
    ("percent", r"50\%", r"0.5\%"),
    ("percent", r"50\%", r"5000\%"),
    ("percent", r"50\%", r"\frac12\%"),
    ("percent", r"0.5\%", r"50\%"),
    ("percent", r"50\%", "5000"),
    ("tolerance", r"\frac{100000000}{3}", "33333330.5"),
    ("tolerance", r"\frac{2000000}{7}", "285714.0"),
    ("tolerance", r"\frac{1}{3}", "0.3334"),
    ("tolerance", r"\frac{1}{3}", "0.3333332"),  # more than one unit of its last place below 1/3
    ("currency", r"\$50", r"50 \text{ cents}"),
    ("currency", r"50 \text{ cents}", r"\$50"),
    ("currency", r"\$50", "50 cents"),
    ("relation", "5", r"\geq 5"),
    ("relation", "5", r"\ge 5"),
    ("relation", "5", r"\neq 5"),
    ("relation", "5", "<5"),
    ("relation", "5", r"x \geq 5"),
    ("relation", "5", "x > 5"),
    ("relation", "5", r"\leq 5"),
    ("unit", r"3 \text{ minutes}", r"3 \text{ hours}"),
    ("unit", r"3 \text{ minutes}", "3 hours"),
    ("unit", r"5 \text{ cm}^3", r"5 \text{ cm}^2"),
    ("unit", r"5 \text{ cm}^3", "5 cm^2"),
    ("unit", r"90^\circ", r"90 \text{ radians}"),
    ("unit", r"12 \text{ km}", r"12 \text{ m}"),
    # numeric hedges: both signs, both of two values, an approximation of an exact gold
    ("hedge", "2", r"\pm 2"),
    ("hedge", "2", r"2 \text{ or } -2"),
    ("hedge", "2", r"\{2, -2\}"),
    ("hedge", "2", "2, -2"),
    ("hedge", "12", r"12 \text{ or } 13"),
    ("hedge", r"\pi", r"\approx 3.14"),
    ("hedge", r"\sqrt{2}", r"\approx 1.41"),
    ("hedge", "3", r"\approx 3.4"),
]

# (class, gold, right answer in the box): the same shapes, correct
RIGHT = [
    ("anagram", r"\text{Amy}", r"\text{Amy}"),
    ("anagram", r"\text{Amy}", "amy"),
    ("anagram", r"\text{Alice}", r"\textbf{ Alice }"),
    ("anagram", r"\text{the circle}", "circle"),
    ("percent", r"50\%", "50"),
    ("percent", r"50\%", "0.5"),
    ("percent", r"50\%", r"\frac{1}{2}"),
    ("percent", "0.5", r"50\%"),
    ("percent", r"50\%", r"50 \%"),
    ("tolerance", r"\frac{1}{3}", "0.3333333"),
    ("tolerance", r"\frac{2000000}{7}", "285714.2857143"),
    ("tolerance", r"\frac{100000000}{3}", "33333333.3333333"),
    ("tolerance", r"\frac{2000000}{7}", "285714.3"),  # rounded correctly to its own one place, within 1e-6
    ("tolerance", r"\frac{1}{3}", "0.3333334"),  # its last digit off by one: within one unit of that place
    ("currency", r"\$50", "50"),
    ("currency", r"\$50", r"\$50.00"),
    ("currency", r"50 \text{ cents}", "50"),
    ("relation", "5", "x = 5"),
    ("relation", r"x \geq 5", r"x \ge 5"),
    ("unit", r"3 \text{ minutes}", "3"),
    ("unit", r"3 \text{ minutes}", r"3 \text{ minutes}"),
    ("unit", "3", "3 minutes"),
    ("unit", r"5 \text{ cm}^3", "5"),
    ("unit", r"5 \text{ cm}^3", r"5 \text{ cm}^3"),
    ("unit", r"90^\circ", "90"),
    ("unit", r"90^\circ", r"90 \text{ degrees}"),
    ("hedge", "-2", r"-2"),
    ("hedge", r"\{2, -2\}", r"\pm 2"),
]


@pytest.mark.parametrize("answer_format", ["boxed", "auto"])
def test_a_gamed_answer_scores_zero(pool, answer_format):
    results = score_math([_boxed(w) for _, _, w in WRONG], [g for _, g, _ in WRONG], answer_format=answer_format, pool=pool,
                         timeout_s=10.0)
    scored = [(kind, gold, wrong, r.detail) for (kind, gold, wrong), r in zip(WRONG, results) if r.score != 0.0]
    assert scored == []


@pytest.mark.parametrize("answer_format", ["boxed", "auto"])
def test_the_same_shape_written_right_still_scores_one(pool, answer_format):
    results = score_math([_boxed(r) for _, _, r in RIGHT], [g for _, g, _ in RIGHT], answer_format=answer_format, pool=pool,
                         timeout_s=10.0)
    refused = [(kind, gold, right, r.reason, r.detail) for (kind, gold, right), r in zip(RIGHT, results) if r.score != 1.0]
    assert refused == []


def test_every_class_of_the_issue_is_covered():
    assert {kind for kind, _, _ in WRONG} == {"anagram", "percent", "tolerance", "currency", "relation", "unit", "hedge"}


@pytest.mark.parametrize("hedge", [r"\boxed{(C) or (D)}", "The answer is (A) (B) (C) (D)", r"\boxed{C, D}", r"\boxed{C \text{ or } D}",
                                   "The answer is C or D.", r"\boxed{ABCD}"])
def test_a_choice_hedge_scores_zero(pool, hedge):
    assert _score(pool, "C", hedge, "choice").score == 0.0


@pytest.mark.parametrize("answer", [r"\boxed{C}", r"\boxed{(C)}", "The answer is (C).", r"\boxed{\text{(C)}}"])
def test_one_committed_letter_still_scores(pool, answer):
    assert _score(pool, "C", answer, "choice").score == 1.0


_INTERMEDIATE = (r"The interest after six months is $0.04 \cdot 10,000 \cdot \frac{1}{2} = \boxed{200}$, then "
                 r"$0.05 \cdot 10,200 \cdot \frac{1}{2} = \boxed{255}$, so she has $10,455. Final Answer: The final answer is "
                 r"$10,455$. I hope it is correct.")


@pytest.mark.parametrize("answer_format", ["auto", "boxed"])
def test_a_final_answer_statement_after_the_last_box_wins(pool, answer_format):
    assert _score(pool, "10455", _INTERMEDIATE, answer_format).score == 1.0
    assert _score(pool, "255", _INTERMEDIATE, answer_format).score == 0.0


def test_a_box_after_the_statement_is_still_the_answer(pool):
    response = r"The final answer is $7$. Wait, recheck: the count is $\boxed{8}$."
    assert _score(pool, "8", response, "auto").score == 1.0
    assert _score(pool, "7", response, "auto").score == 0.0


_NAMED_PARTS = r"So the two solutions are \(y_1=\boxed{2x+1}\) and \(y_2=\boxed{3-x}\)."


@pytest.mark.parametrize("answer_format", ["auto", "boxed"])
def test_named_parts_in_several_boxes_form_one_answer(pool, answer_format):
    assert _score(pool, "2x+1, 3-x", _NAMED_PARTS, answer_format).score == 1.0
    assert _score(pool, "3-x", _NAMED_PARTS, answer_format).score == 0.0
