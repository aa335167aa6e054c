"""Clipped surrogate with clip-higher and dual-clip; aggregations; DelTA's homogeneity."""

import pytest
import torch

from delta_rlvr.core import (
    DeltaConfig,
    PolicyLossConfig,
    aggregate,
    delta_coefficients,
    per_token_policy_loss,
    policy_loss,
)


def test_per_token_loss_of_hand_worked_cases():
    # eps_low 0.2, eps_high 0.28, dual-clip c = 10.
    # A=+1, r=1.5: max(-1.5, -1.28) = -1.28 (high clip active)
    # A=+1, r=0.5: max(-0.5, -0.8) = -0.5 (unclipped)
    # A=-1, r=0.5: max(0.5, 0.8) = 0.8 (low clip active)
    # A=-1, r=20: max(20, 1.28) = 20, capped by dual-clip at -A c = 10
    # A=-2, r=1.1: max(2.2, 2.2) = 2.2
    ratio = torch.tensor([[1.5, 0.5, 0.5, 20.0, 1.1]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -2.0]])
    loss, _, dual = per_token_policy_loss(ratio.log(), torch.zeros_like(ratio), adv)
    torch.testing.assert_close(loss, torch.tensor([[-1.28, -0.5, 0.8, 10.0, 2.2]]))
    assert dual.tolist() == [[False, False, False, True, False]]
    out = policy_loss(ratio.log(), torch.zeros_like(ratio), adv, torch.ones_like(ratio, dtype=torch.bool))
    torch.testing.assert_close(out.loss, torch.tensor((-1.28 - 0.5 + 0.8 + 10.0 + 2.2) / 5))
    assert out.clip_frac_high.item() == pytest.approx(1 / 5)
    assert out.clip_frac_low.item() == pytest.approx(1 / 5)
    assert out.dual_clip_frac.item() == pytest.approx(1 / 5)


def test_aggregations_of_a_hand_worked_batch():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert aggregate(loss, mask, "token_mean").item() == pytest.approx(10 / 4)
    assert aggregate(loss, mask, "seq_mean_token_mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(loss, mask, "constant").item() == pytest.approx(10 / 6)
    assert aggregate(loss, mask, "constant", 100).item() == pytest.approx(0.1)


def test_micro_batch_losses_with_the_global_normaliser_add_up_to_the_batch_loss():
    g = torch.Generator().manual_seed(0)
    logp, old = torch.randn(8, 6, generator=g) * 0.1, torch.randn(8, 6, generator=g) * 0.1
    adv = torch.randn(8, generator=g)
    mask = torch.rand(8, 6, generator=g) > 0.3
    for agg, norm in [("token_mean", mask.sum()), ("seq_mean_token_mean", 8)]:
        cfg = PolicyLossConfig(aggregation=agg)
        full = policy_loss(logp, old, adv, mask, cfg).loss
        parts = sum(policy_loss(logp[i:i + 3], old[i:i + 3], adv[i:i + 3], mask[i:i + 3], cfg, normaliser=norm).loss for i in (0, 3, 6))
        torch.testing.assert_close(parts, full)


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    b, t, h = 12, 10, 5
    logp = (torch.randn(b, t, generator=g) * 0.8).requires_grad_()  # ratios across every clip region
    old = torch.randn(b, t, generator=g) * 0.8
    adv = torch.randn(b, generator=g)
    adv[:3] = 0
    mask = torch.arange(t)[None] < torch.randint(1, t + 1, (b,), generator=g)[:, None]
    v = torch.randn(b, t, h, generator=g)
    return logp, old, adv, mask, v


def test_coefficient_one_reproduces_the_plain_dapo_loss_and_gradient():
    logp, old, adv, mask, v = _batch(1)
    coef = delta_coefficients(v, adv, mask, DeltaConfig(coef_min=1.0, coef_max=1.0)).coef
    plain = policy_loss(logp, old, adv, mask).loss
    (g_plain,) = torch.autograd.grad(plain, logp)
    weighted = policy_loss(logp, old, adv[:, None] * coef, mask).loss
    (g_weighted,) = torch.autograd.grad(weighted, logp)
    assert torch.equal(plain, weighted) and torch.equal(g_plain, g_weighted)


@pytest.mark.parametrize("dual_clip", [10.0, 1.5, None])
def test_weighting_the_token_loss_equals_feeding_a_times_coef_as_advantages(dual_clip):
    # The clipped surrogate is positively homogeneous in A (dual-clip included), so
    # (1 / sum lambda) sum lambda loss(A) = token_mean(loss(A * lambda_bar)), lambda_bar = lambda N / Z.
    # Float32 products in a different order: agreement to 1e-6 relative.
    cfg = PolicyLossConfig(dual_clip=dual_clip)
    for seed in range(5):
        logp, old, adv, mask, v = _batch(seed)
        out = delta_coefficients(v, adv, mask)
        lam = out.coef / out.stats.normaliser  # un-normalised lambda
        tok, _, _ = per_token_policy_loss(logp, old, adv, cfg)
        paper = (tok * lam)[mask].sum() / lam[mask].sum()  # Eq. 8
        fed = policy_loss(logp, old, adv[:, None] * out.coef, mask, cfg).loss
        torch.testing.assert_close(fed, paper, rtol=1e-6, atol=1e-7)
        g_paper, = torch.autograd.grad(paper, logp)
        g_fed, = torch.autograd.grad(fed, logp)
        torch.testing.assert_close(g_fed, g_paper, rtol=1e-5, atol=1e-8)


def test_invalid_loss_settings_name_the_field():
    with pytest.raises(ValueError, match="clip_low"):
        PolicyLossConfig(clip_low=1.2)
    with pytest.raises(ValueError, match="dual_clip"):
        PolicyLossConfig(dual_clip=0.5)
    with pytest.raises(ValueError, match="aggregation"):
        PolicyLossConfig(aggregation="sum")
