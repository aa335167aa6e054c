"""FrozenGamma: the one owner of the frozen assignment temperature (freeze_temperature)."""

from __future__ import annotations

import pytest
import torch

from delta_rlvr.core import DeltaConfig, DeltaStream, delta_coefficients
from delta_rlvr.core.frozen import FrozenGamma


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(8, 5, 3, generator=g)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0, 2.0, -2.0, 1.0])
    mask = torch.rand(8, 5, generator=g) > 0.2
    return v, adv, mask


def test_the_first_measurement_is_kept_and_passed_back_as_gamma():
    frozen = FrozenGamma(True)
    assert frozen.current() is None and frozen.state() is None
    cfg = DeltaConfig(refine_steps=2, freeze_temperature=True)
    v, adv, mask = batch(0)
    first = delta_coefficients(v, adv, mask, cfg, gamma=frozen.current())
    frozen.observe(first.stats.gamma[0])
    assert frozen.current().dtype == torch.float64
    torch.testing.assert_close(frozen.current(), first.stats.gamma[0].double())
    v2, adv2, mask2 = batch(1)
    later = delta_coefficients(v2, adv2, mask2, cfg, gamma=frozen.current())
    frozen.observe(later.stats.gamma[0])  # changes nothing
    torch.testing.assert_close(frozen.current(), first.stats.gamma[0].double())
    torch.testing.assert_close(later.stats.gamma, first.stats.gamma[0].expand(3, 2))  # every iteration
    stream = DeltaStream(cfg, gamma=frozen.current())
    streamed = stream.run(lambda: [(v2, adv2, mask2)])
    torch.testing.assert_close(streamed.coef[0], later.coef, rtol=0, atol=1e-5)


def test_disabled_never_hands_out_a_gamma():
    frozen = FrozenGamma(False)
    frozen.observe(torch.tensor([1.0, 2.0]))
    assert frozen.current() is None
    frozen.load([1.0, 2.0])
    assert frozen.current() is None and frozen.state() == [1.0, 2.0]


def test_state_round_trips_and_bad_values_are_refused():
    frozen = FrozenGamma(True, [0.5, 0.25])
    assert frozen.state() == [0.5, 0.25]
    assert FrozenGamma(True, torch.tensor(frozen.state())).state() == [0.5, 0.25]
    frozen.load(None)
    assert frozen.current() is None
    for bad in ([1.0], [1.0, -2.0], [1.0, float("inf")], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="two positive numbers"):
            FrozenGamma(True, bad)


def test_random_coefficients_measure_no_gamma_and_their_old_nan_state_loads():
    cfg = DeltaConfig(random_coefficients=True, freeze_temperature=True)
    v, adv, mask = batch(2)
    out = delta_coefficients(v, adv, mask, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(out.stats.gamma).all()
    frozen = FrozenGamma(True)
    frozen.observe(out.stats.gamma[0])
    assert frozen.current() is None and frozen.state() is None
    frozen.load([float("nan"), float("nan")])  # what earlier versions kept for such runs
    assert frozen.current() is None
