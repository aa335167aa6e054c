"""Golden runs: every method, and the step's other paths, log the numbers they logged when the
golden file was written (tests/train/golden.py). A refactor of the step must keep them."""

from __future__ import annotations

import json
import math

import pytest
from golden import GOLDEN_FILE, RUNS, run_metrics

GOLDEN = json.loads(GOLDEN_FILE.read_text())


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def test_the_golden_file_covers_every_method():
    import typing

    from delta_rlvr.train.config import Method

    methods = set(typing.get_args(Method))
    assert methods <= set(GOLDEN) and set(GOLDEN) == set(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_fixed_seed_run_logs_its_golden_metrics(name, tmp_path):
    rows = run_metrics(name, tmp_path / name)
    golden = GOLDEN[name]
    assert [r["step"] for r in rows] == [r["step"] for r in golden]
    for got, want in zip(rows, golden):
        # every golden metric is still logged (new keys, such as renamed metrics' new names, may be added)
        assert want.keys() <= got.keys(), f"step {got['step']}: no longer logged: {sorted(want.keys() - got.keys())}"
        wrong = {k: (got[k], want[k]) for k in want if not close(got[k], want[k])}
        assert not wrong, f"{name} step {got['step']}: (got, golden) {wrong}"
