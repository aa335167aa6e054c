"""DelTA coefficients (the DelTA paper's method): hand-worked numbers, a float64 reference, invariants."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from reference_delta import reference_coefficients  # tests/ is on sys.path (its conftest.py)

from delta_rlvr.core import DeltaConfig, delta_coefficients, row_proxy
from delta_rlvr.core.config import COEF_QUANTILES


def random_batch(seed, b=12, t=9, h=6, zero_groups=True, one_sided=None, scale=1.0):
    """Groups of 4 responses with GRPO-like advantages, padding, and optionally a group whose
    rewards are all equal (A = 0) or only one sign."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(b, t, h, generator=g) * scale + torch.randn(h, generator=g)
    adv = torch.randn(b, generator=g)
    if zero_groups:
        adv[:4] = 0.0
    if one_sided == "pos":
        adv = adv.abs()
    elif one_sided == "neg":
        adv = -adv.abs()
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return v, adv, mask


# --------------------------------------------------------------------------------------------


def hand_batch():
    # H = 1 so every step can be done by hand. Response 0 is correct (A = +1), response 1
    # wrong (A = -1); all four tokens valid.
    v = torch.tensor([[[1.0], [3.0]], [[-1.0], [1.0]]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 2, dtype=torch.bool)
    return v, adv, mask


def test_hand_worked_example_without_refinement():
    v, adv, mask = hand_batch()
    # mu+ = (1*1 + 1*3) / 2 = 2, mu- = (-1 + 1) / 2 = 0.
    # d(v) = 2 v (mu+ - mu-) + |mu-|^2 - |mu+|^2 = 4 v - 4.
    # Positive tokens: Delta+ = d(1) = 0, d(3) = 8. Negative: Delta- = -d(-1) = 8, -d(1) = 0.
    # gamma+ = std([0, 8]) = 4 = gamma- (population std).
    # alpha = sigmoid(0 / 4) = 0.5 and sigmoid(8 / 4) = sigmoid(2) = 0.8807970780.
    # lambda = 0.8 + 0.4 alpha = 1.0 and 1.1523188312; Z = 2 + 2 * 1.1523188312 = 4.3046376624.
    # coef = lambda * N / Z with N = 4: 0.9292303589 and 1.0707696411.
    out = delta_coefficients(v, adv, mask, DeltaConfig(refine_steps=0))
    expected = torch.tensor([[0.9292303589, 1.0707696411], [1.0707696411, 0.9292303589]])
    torch.testing.assert_close(out.coef, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.stats.gamma[0], torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(out.stats.centroid_norm[0], torch.tensor([2.0, 0.0]))


def test_hand_worked_example_with_one_refinement():
    v, adv, mask = hand_batch()
    # alpha^(0) as above: positive tokens (v=1, v=3) get 0.5, 0.8808; negative (v=-1, v=1)
    # get 0.8808, 0.5. Re-weighted centroids (|A| = 1):
    # mu+^(1) = (0.5 * 1 + 0.8808 * 3) / 1.3808 = 2.2757806227
    # mu-^(1) = (0.8808 * -1 + 0.5 * 1) / 1.3808 = -0.2757806227
    # d(v) = 2 v * 2.5515612454 + (0.0760550 - 5.1791773) = 5.1031224908 (v - 1):
    # Delta+ = 0 and 10.2062449815; Delta- = 10.2062449815 and 0.
    # gamma^(1) = gamma^(0) = 4 (lagged), so alpha* = sigmoid(2.5515612454) = 0.9276783305.
    # lambda = 1.0 and 1.1710713322; Z = 4.3421426644; coef = 0.9212041863 and 1.0787958137.
    out = delta_coefficients(v, adv, mask, DeltaConfig(refine_steps=1))
    expected = torch.tensor([[0.9212041863, 1.0787958137], [1.0787958137, 0.9212041863]])
    torch.testing.assert_close(out.coef, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.stats.gamma, torch.tensor([[4.0, 4.0], [4.0, 4.0]]))
    torch.testing.assert_close(
        out.stats.centroid_norm[1], torch.tensor([2.2757806227, 0.2757806227])
    )


# The float64 reference: float32 margins carry a relative error of a few 1e-7 of
# |v| |mu+ - mu-|; after division by gamma (of the same order as the margins) and the sigmoid
# (slope <= 1/4) the coefficient error is ~1e-6. 1e-5 leaves a 10x margin and is still 100x
# tighter than the smallest effect under test (coefficients differ by >= 1e-3 between K values).
TOL = 1e-5

VARIANTS = {
    "paper": {},
    "wide_range": dict(coef_min=0.5, coef_max=1.5),
    "low_range": dict(coef_min=0.5, coef_max=1.2),
    "high_range": dict(coef_min=0.8, coef_max=1.5),
    "hard": dict(assignment="hard"),
    "within_side": dict(contrast="within_side"),
    "no_range_map": dict(range_map=False),
    "no_self_normalise": dict(self_normalise=False),
}


def _ref_kwargs(cfg: DeltaConfig):
    return dict(
        k_steps=cfg.refine_steps, lo=cfg.coef_min, hi=cfg.coef_max, assignment=cfg.assignment,
        contrast=cfg.contrast, range_map=cfg.range_map, self_normalise=cfg.self_normalise,
    )


@pytest.mark.parametrize("k_steps", [0, 1, 2, 3])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_coefficients_match_float64_reference(k_steps, variant):
    cfg = DeltaConfig(refine_steps=k_steps, **VARIANTS[variant])
    for seed, one_sided in itertools.product(range(6), [None, "pos", "neg"]):
        v, adv, mask = random_batch(seed, one_sided=one_sided, scale=0.5 + seed)
        got = delta_coefficients(v, adv, mask, cfg).coef
        want = reference_coefficients(v, adv, mask, **_ref_kwargs(cfg)).float()
        if cfg.assignment == "hard":
            # A margin within rounding of 0 may flip a hard assignment; that changes a
            # coefficient by the full range. Compare only where the margins are clear of 0,
            # which is all tokens of these batches (checked by the count below).
            assert (got - want).abs().gt(TOL).sum() == 0
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)


def test_coefficients_match_reference_on_a_large_realistic_batch():
    # 64 responses x 200 tokens x H = 64, hidden states with a large shared mean (the
    # "formatting background"): the two centroids have cosine 0.99998, and the float32 margin
    # v.(mu+ - mu-) is a difference of terms ~|mean| / spread = 40x larger than the margin
    # itself, so the float32 rounding of the margins is 40x that of the random batches above.
    # Measured error 1.05e-5; 3e-5 states that bound with margin, 3x inside the 1e-4 the
    # acceptance test allows.
    g = torch.Generator().manual_seed(7)
    v = 5.0 + torch.randn(64, 200, 64, generator=g)
    adv = torch.randn(64, generator=g)
    adv[:16] = 0
    mask = torch.arange(200)[None] < torch.randint(20, 201, (64,), generator=g)[:, None]
    for k in (0, 1, 3):
        got = delta_coefficients(v, adv, mask, DeltaConfig(refine_steps=k)).coef
        want = reference_coefficients(v, adv, mask, k_steps=k).float()
        torch.testing.assert_close(got, want, rtol=0, atol=3e-5)


def test_coefficients_match_reference_with_a_frozen_gamma():
    v, adv, mask = random_batch(3)
    gamma = torch.tensor([0.7, 1.9])
    cfg = DeltaConfig(refine_steps=2, freeze_temperature=True)
    got = delta_coefficients(v, adv, mask, cfg, gamma=gamma).coef
    want = reference_coefficients(v, adv, mask, k_steps=2, fixed_gamma=(0.7, 1.9)).float()
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)


def test_freezing_the_first_batch_gamma_reproduces_that_batch_when_k_is_1():
    # With K = 1 every sigmoid already uses gamma^(0), so feeding gamma^(0) back is a no-op.
    v, adv, mask = random_batch(11)
    first = delta_coefficients(v, adv, mask, DeltaConfig(freeze_temperature=True))
    again = delta_coefficients(
        v, adv, mask, DeltaConfig(freeze_temperature=True), gamma=first.stats.gamma[0]
    )
    torch.testing.assert_close(again.coef, first.coef, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Invariants


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_invalid_tokens_get_zero_and_valid_tokens_lie_in_the_scaled_range(variant):
    cfg = DeltaConfig(**VARIANTS[variant])
    v, adv, mask = random_batch(5)
    out = delta_coefficients(v, adv, mask, cfg)
    assert (out.coef[~mask] == 0).all()
    lo, hi = cfg.map_range
    scale = out.stats.normaliser.item()
    valid = out.coef[mask]
    assert valid.min() >= lo * scale - 1e-6 and valid.max() <= hi * scale + 1e-6
    if cfg.self_normalise:
        assert valid.double().mean().item() == pytest.approx(1.0, abs=1e-6)
    zero_adv = mask & (adv == 0)[:, None]
    torch.testing.assert_close(out.coef[zero_adv], torch.full_like(out.coef[zero_adv], lo * scale))


def test_permuting_responses_permutes_the_coefficients():
    v, adv, mask = random_batch(2, b=16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    base = delta_coefficients(v, adv, mask).coef
    permuted = delta_coefficients(v[perm], adv[perm], mask[perm]).coef
    torch.testing.assert_close(permuted, base[perm], rtol=0, atol=1e-6)


def test_all_zero_advantages_give_ones_on_valid_tokens():
    v, _, mask = random_batch(4)
    out = delta_coefficients(v, torch.zeros(v.shape[0]), mask)
    assert torch.equal(out.coef, mask.float())


def test_equal_bounds_give_ones_whatever_the_batch():
    v, adv, mask = random_batch(6)
    out = delta_coefficients(v, adv, mask, DeltaConfig(coef_min=1.0, coef_max=1.0))
    assert torch.equal(out.coef, mask.float())


def test_a_one_sided_batch_compares_against_a_zero_centroid():
    # No negative response: mu- = 0 / max(0, 1e-8) = 0, exactly as the paper's formula gives.
    v, adv, mask = random_batch(8, one_sided="pos")
    out = delta_coefficients(v, adv, mask)
    assert out.stats.side_tokens[1] == 0
    assert out.stats.centroid_norm[0, 1] == 0
    assert out.stats.centroid_cosine[0] == 0
    assert torch.isfinite(out.coef).all()


def test_garbage_in_padded_hidden_states_is_ignored_when_the_proxy_is_masked():
    v, adv, mask = random_batch(9)
    hidden = v.clone()
    hidden[~mask] = float("nan")
    logp = torch.full(mask.shape, -0.5)
    clean = delta_coefficients(row_proxy(v, logp, mask), adv, mask).coef
    dirty = delta_coefficients(row_proxy(hidden, logp, mask), adv, mask).coef
    assert torch.equal(clean, dirty)


def test_nan_in_the_proxy_raises_an_error_that_says_how_to_mask_it():
    v, adv, mask = random_batch(9)
    v[~mask] = float("nan")
    with pytest.raises(ValueError, match=r"row_proxy\(hidden, logp, mask\)"):
        delta_coefficients(v, adv, mask)


def test_statistics_describe_the_batch():
    v, adv, mask = random_batch(10, b=16)
    out = delta_coefficients(v, adv, mask, DeltaConfig(refine_steps=2))
    s = out.stats
    signed = mask & (adv != 0)[:, None]
    assert s.side_tokens.tolist() == [
        (mask & (adv > 0)[:, None]).sum().item(),
        (mask & (adv < 0)[:, None]).sum().item(),
    ]
    assert s.zero_adv_tokens.item() == (mask & (adv == 0)[:, None]).sum().item()
    assert s.valid_tokens.item() == mask.sum().item()
    expected_mass = [(adv.clamp_min(0)[:, None] * mask).sum(), (adv.clamp_max(0).abs()[:, None] * mask).sum()]
    torch.testing.assert_close(s.side_mass, torch.stack(expected_mass))
    assert s.gamma.shape == (3, 2) and s.centroid_cosine.shape == (3,)
    # lag: gamma^(1) = gamma^(0) = std(Delta^(0)); gamma^(2) = std(Delta^(1))
    torch.testing.assert_close(s.gamma[1], s.gamma[0])
    torch.testing.assert_close(s.gamma[2], s.margin_std[1])
    import numpy as np

    values = out.coef[signed].double().numpy()
    torch.testing.assert_close(
        s.coef_quantiles, torch.tensor(np.quantile(values, COEF_QUANTILES)).float()
    )
    assert s.coef_mean.item() == pytest.approx(values.mean(), abs=1e-6)
    metrics = s.as_metrics()
    assert metrics["delta/coef_q50"] == pytest.approx(float(np.median(values)), abs=1e-6)
    assert {"delta/temperature_pos", "delta/centroid_cosine", "delta/frac_at_max"} <= set(metrics)
    assert {"delta/gamma_pos", "delta/gamma_neg"} <= set(metrics)


def test_metrics_name_gamma_and_keep_the_old_temperature_keys_as_aliases():
    v, adv, mask = random_batch(10, b=16)
    s = delta_coefficients(v, adv, mask, DeltaConfig(refine_steps=2)).stats
    metrics = s.as_metrics("x/")
    for side, i in (("pos", 0), ("neg", 1)):
        assert metrics[f"x/gamma_{side}"] == pytest.approx(float(s.gamma[-1, i].double()), rel=1e-12)
        assert metrics[f"x/temperature_{side}"] == metrics[f"x/gamma_{side}"]


def test_hard_assignment_puts_every_signed_token_at_a_bound():
    v, adv, mask = random_batch(12)
    out = delta_coefficients(v, adv, mask, DeltaConfig(assignment="hard"))
    signed = mask & (adv != 0)[:, None]
    raw = out.coef[signed] / out.stats.normaliser
    assert torch.isclose(raw, torch.tensor(0.8)).logical_or(torch.isclose(raw, torch.tensor(1.2))).all()
    assert (out.stats.frac_at_min + out.stats.frac_at_max).item() == pytest.approx(1.0)


def test_random_coefficients_are_uniform_in_the_range_and_reproducible():
    v, adv, mask = random_batch(13, b=64, t=64)
    cfg = DeltaConfig(random_coefficients=True)
    a = delta_coefficients(v, adv, mask, cfg, generator=torch.Generator().manual_seed(1))
    b = delta_coefficients(v, adv, mask, cfg, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.coef, b.coef)
    signed = mask & (adv != 0)[:, None]
    raw = a.coef[signed] / a.stats.normaliser
    assert raw.min() >= 0.8 and raw.max() <= 1.2
    # Uniform[0.8, 1.2] has mean 1.0 and std 0.4 / sqrt(12) = 0.1155; ~2000 tokens give a
    # standard error of the mean of 0.0026, so 0.015 is ~6 standard errors.
    assert raw.mean().item() == pytest.approx(1.0, abs=0.015)
    assert raw.std().item() == pytest.approx(0.4 / math.sqrt(12), abs=0.01)
    assert a.coef[mask].double().mean().item() == pytest.approx(1.0, abs=1e-6)


def test_row_proxy_is_one_minus_p_times_hidden_in_float32():
    hidden = torch.tensor([[[2.0, -4.0], [1.0, 1.0]]], dtype=torch.bfloat16)
    logp = torch.log(torch.tensor([[0.25, 1.0]]))
    v = row_proxy(hidden, logp)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, torch.tensor([[[1.5, -3.0], [0.0, 0.0]]]))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(refine_steps=-1), "refine_steps"),
        (dict(refine_steps=1.5), "refine_steps"),
        (dict(coef_min=-0.1), "coef_min"),
        (dict(coef_max=float("inf")), "coef_max"),
        (dict(coef_min=1.3, coef_max=1.2), "coef_min"),
        (dict(assignment="soft-ish"), "assignment"),
        (dict(contrast="one_sided"), "contrast"),
        (dict(range_map="yes"), "range_map"),
    ],
)
def test_invalid_config_values_name_the_field_and_the_value(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        DeltaConfig(**kwargs)
    assert repr(list(kwargs.values())[-1]) in str(err.value) or str(list(kwargs.values())[-1]) in str(err.value)


def test_wrong_shapes_are_refused_with_the_expected_shape():
    v, adv, mask = random_batch(1)
    with pytest.raises(ValueError, match=r"advantages must have shape \(B,\)"):
        delta_coefficients(v, adv[:, None].expand(-1, 3), mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        delta_coefficients(v, adv, mask.float())
    with pytest.raises(ValueError, match="freeze_temperature"):
        delta_coefficients(v, adv, mask, gamma=torch.ones(2))
