"""Golden runs: every method, and the step's other paths, log the numbers they logged when the
golden file was written (tests/train/golden.py). A refactor of the step must keep them.

The runs are in float64 so that the file holds on any CPU. Measured on one machine by
emulating others (ATEN_CPU_CAPABILITY=avx2 / default, MKL_ENABLE_INSTRUCTIONS=AVX2, another
run order in the process): in float32 the metrics moved by up to 3.6e-5 (relative) at step 1
and 1.1e-4 at step 3, more than a tolerance that catches a real change; in float64 by at most
8.1e-7 (the core keeps per-row margins and coefficients in float32, so a float64 input that
lands on a float32 rounding boundary moves one ulp). RELATIVE_TOLERANCE is 12x that; the last
test shows that a 0.1% change to one formula, or to one default, fails by far more.
"""

from __future__ import annotations

import json
import math

import pytest
from golden import GOLDEN_FILE, RUNS, run_metrics

from delta_rlvr.core import coefficients

GOLDEN = json.loads(GOLDEN_FILE.read_text())
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-8


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)


def mismatches(rows: list[dict], golden: list[dict]) -> dict:
    """{(step, metric): (got, golden)} for every golden metric that moved beyond the tolerance."""
    assert [r["step"] for r in rows] == [r["step"] for r in golden]
    wrong = {}
    for got, want in zip(rows, golden):
        # every golden metric is still logged (new keys, such as renamed metrics' new names, may be added)
        assert want.keys() <= got.keys(), f"step {got['step']}: no longer logged: {sorted(want.keys() - got.keys())}"
        wrong.update({(got["step"], k): (got[k], want[k]) for k in want if not close(got[k], want[k])})
    return wrong


def test_the_golden_file_covers_every_method():
    import typing

    from delta_rlvr.train.config import Method

    methods = set(typing.get_args(Method))
    assert methods <= set(GOLDEN) and set(GOLDEN) == set(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_fixed_seed_run_logs_its_golden_metrics(name, tmp_path):
    wrong = mismatches(run_metrics(name, tmp_path / name), GOLDEN[name])
    assert not wrong, f"{name}: (got, golden) {wrong}"


def test_the_golden_check_catches_a_small_change_to_the_step(tmp_path, monkeypatch):
    # a default moved by 0.1%: the coefficients' upper bound 1.2 -> 1.1988
    changed_default = mismatches(run_metrics("delta", tmp_path / "coef_max", ["algorithm.coefficients.coef_max=1.1988"]),
                                 GOLDEN["delta"])
    # one formula changed by 0.1%: every margin Delta scaled by 1.001 (as a one-line edit of kernels.margins would)
    margins = coefficients.margins
    monkeypatch.setattr(coefficients, "margins", lambda *args: margins(*args) * 1.001)
    changed_formula = mismatches(run_metrics("delta", tmp_path / "margins"), GOLDEN["delta"])
    for wrong in (changed_default, changed_formula):
        assert any(step == 1 for step, _ in wrong), wrong  # caught at the first step already
        worst = max(abs(got - want) / max(abs(want), 1e-30) for got, want in wrong.values())
        assert worst > 20 * RELATIVE_TOLERANCE, wrong
