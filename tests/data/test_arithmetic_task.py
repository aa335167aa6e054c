"""The embedded arithmetic task is deterministic, short, correct, and scored consistently."""

import pytest

from delta_rlvr.data import ArithmeticConfig, arithmetic_dataset, arithmetic_problem, extract_arithmetic_answer, score_arithmetic


def test_default_problems_are_three_two_digit_addends_with_their_sum():
    for record in arithmetic_dataset(200):
        terms = record.question.removesuffix("=").split("+")
        assert len(terms) == 3 and all(10 <= int(t) <= 99 for t in terms)
        assert record.gold == str(sum(int(t) for t in terms))
        assert len(record.question) <= 9


def test_problem_i_depends_only_on_seed_and_index():
    config = ArithmeticConfig(seed=5)
    assert arithmetic_dataset(10, config, start=100) == [arithmetic_problem(i, config) for i in range(100, 110)]
    assert arithmetic_problem(3, ArithmeticConfig(seed=1)) != arithmetic_problem(3, ArithmeticConfig(seed=2))


def test_multiplication_binds_tighter_than_addition_and_subtraction():
    config = ArithmeticConfig(min_terms=2, max_terms=6, min_digits=1, max_digits=3, operators="+-*", seed=3)
    for record in arithmetic_dataset(300, config):
        expression = record.question.removesuffix("=")
        assert int(record.gold) == eval(expression)  # noqa: S307 - a test oracle over digits and +-*


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"min_terms": 1}, "terms"), ({"max_digits": 12}, "digits"), ({"operators": "/"}, "operators")],
)
def test_bad_knobs_are_rejected_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ArithmeticConfig(**kwargs)


def test_extractor_prefers_box_then_answer_word_then_last_integer():
    assert extract_arithmetic_answer("37+48=85. 85+19=104. answer 104") == "104"
    assert extract_arithmetic_answer(r"\boxed{-3} answer 4") == "-3"
    assert extract_arithmetic_answer("85 then 104") == "104"
    assert extract_arithmetic_answer("no digits") is None


def test_scores_are_exact_integer_matches():
    assert score_arithmetic(["answer 104", "answer 105", "", "answer 0104"], ["104", "104", "104", "104"]) == [1.0, 0.0, 0.0, 1.0]
