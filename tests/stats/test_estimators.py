"""pass@k against a brute-force count over all k-subsets; weighted averages and SEs by hand."""

import itertools
import math
from fractions import Fraction

import pytest

from delta_rlvr.stats.estimators import (
    avg_at_k,
    mean_pass_at_k,
    pass_at_k,
    problem_standard_error,
    reported_ks,
    sampling_standard_error,
    weighted_average,
    weighted_standard_error,
)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_equals_the_fraction_of_k_subsets_holding_a_correct_sample(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            brute = Fraction(sum(any(s) for s in subsets), len(subsets))
            assert pass_at_k(n, c, k) == pytest.approx(float(brute), abs=1e-15), (n, c, k)


def test_pass_at_k_rejects_k_above_the_sample_count():
    with pytest.raises(ValueError, match="k=5 must lie in"):
        pass_at_k(4, 1, 5)


def test_avg_and_pass_at_k_over_problems_by_hand():
    correct = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    assert avg_at_k(correct) == pytest.approx((0.25 + 0.5 + 0.0) / 3, abs=0)
    # pass@2: 1 - C(3,2)/C(4,2) = 1/2; 1 - C(2,2)/C(4,2) = 5/6; 0
    assert mean_pass_at_k(correct, 2) == pytest.approx((0.5 + 5 / 6 + 0) / 3, abs=1e-15)
    assert mean_pass_at_k(correct, 4) == pytest.approx(2 / 3, abs=1e-15)
    assert reported_ks(16) == [1, 2, 4, 8, 16] and reported_ks(6) == [1, 2, 4, 6] and reported_ks(1) == [1]


def test_weighted_average_weights_by_question_count():
    # AIME 30 questions at 20 %, AMC 40 at 50 %, MATH500 500 at 80 %: (6 + 20 + 400) / 570
    assert weighted_average([0.2, 0.5, 0.8], [30, 40, 500]) == pytest.approx(426 / 570, abs=1e-15)
    se = weighted_standard_error([0.03, 0.04, 0.01], [30, 40, 500])
    assert se == pytest.approx(math.sqrt((30 / 570 * 0.03) ** 2 + (40 / 570 * 0.04) ** 2 + (500 / 570 * 0.01) ** 2), abs=1e-15)
    with pytest.raises(ValueError, match="one weight per value"):
        weighted_average([0.1], [1, 2])


def test_standard_errors_by_hand():
    correct = [[1, 0, 0, 0], [1, 1, 0, 0]]
    # per-problem unbiased variances: 0.25*0.75*4/3 = 0.25, 0.5*0.5*4/3 = 1/3; each over k = 4
    assert sampling_standard_error(correct) == pytest.approx(math.sqrt(0.25 / 4 + (1 / 3) / 4) / 2, abs=1e-15)
    # per-problem means 0.25, 0.5: std ddof=1 = 0.1767767, over sqrt(2)
    assert problem_standard_error(correct) == pytest.approx(math.sqrt(((0.125) ** 2 * 2) / 1) / math.sqrt(2), abs=1e-15)
    assert math.isnan(sampling_standard_error([[1], [0]]))
