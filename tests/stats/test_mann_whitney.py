"""The one-sided Mann-Whitney U test against a hand-worked example and against scipy."""

import pytest
from scipy import stats

from delta_rlvr.stats.mann_whitney import mann_whitney_greater, midranks


def test_u_and_exact_p_of_a_hand_worked_example():
    # x = (3, 5, 8), y = (1, 2, 4, 6): pairs with x > y: 3 beats 1,2 (2); 5 beats 1,2,4 (3); 8 beats all (4) -> U = 9.
    # Null: all C(7, 3) = 35 rank sets equally likely; U >= 9 needs x's ranks summing >= 15:
    # {7,6,5}=18, {7,6,4}=17, {7,6,3}=16, {7,5,4}=16, {7,6,2}=15, {7,5,3}=15, {6,5,4}=15 -> 7 sets
    # ({7,6,1}, {7,4,3}, {6,5,3} sum to 14).
    result = mann_whitney_greater([3, 5, 8], [1, 2, 4, 6])
    assert result.u == 9 and result.method == "exact"
    assert result.p_value == pytest.approx(7 / 35, abs=1e-15)


def test_midranks_share_tied_ranks():
    assert midranks([2.0, 1.0, 2.0, 3.0]) == [2.5, 1.0, 2.5, 4.0]


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([0.61, 0.58, 0.66, 0.70, 0.59], [0.55, 0.57, 0.60, 0.52, 0.54]),  # no ties: exact
        ([0.5, 0.6, 0.6, 0.7], [0.4, 0.5, 0.6, 0.45]),  # ties: asymptotic with tie correction
        ([0.1 * i for i in range(10)], [0.1 * i + 0.05 for i in range(9)]),  # both > 8: asymptotic
        ([0.3, 0.2], [0.9, 0.8, 0.7]),  # x clearly smaller: p near 1
    ],
)
def test_agrees_with_scipy(x, y):
    ours = mann_whitney_greater(x, y)
    ref = stats.mannwhitneyu(x, y, alternative="greater", method="auto")
    assert ours.u == pytest.approx(float(ref.statistic), abs=1e-12)
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("method", ["exact", "asymptotic"])
def test_each_method_agrees_with_scipy_forced_to_it(method):
    x, y = [12.1, 14.3, 15.0, 13.7, 16.2, 11.9], [11.0, 12.5, 10.8, 13.1, 12.0, 11.4]
    ours = mann_whitney_greater(x, y, method=method)
    ref = stats.mannwhitneyu(x, y, alternative="greater", method=method)
    assert ours.method == method and ours.u == float(ref.statistic)
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)


def test_exact_refuses_ties_and_empty_samples_are_named():
    with pytest.raises(ValueError, match="asymptotic"):
        mann_whitney_greater([1, 2], [2, 3], method="exact")
    with pytest.raises(ValueError, match="run more seeds"):
        mann_whitney_greater([], [1.0])
