"""Clipped policy-gradient surrogate with clip-higher and dual-clip (the DAPO objective DelTA builds on).

Per token, with ratio r = exp(logp - old_logp) and advantage A (per response or per token):

    loss = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))        (PPO clip, clip-higher)
    loss = min(loss, -A c)  where A < 0                              (dual-clip, c > 1)

Every branch is linear in A with the branch chosen by the sign of A and by r alone, so for any
coefficient lambda > 0, loss(lambda A) = lambda loss(A): DelTA's per-token advantages A x coef
equal weighting the per-token loss (the DelTA paper's method), dual-clip included.

Aggregations (`Aggregation`):
- "token_mean" (DAPO): sum over valid tokens / number of valid tokens.
- "seq_mean_token_mean" (GRPO): mean over responses of each response's token mean.
- "constant" (Dr.GRPO): sum over valid tokens / a constant (default B x T, the padded size).
With gradient accumulation pass `normaliser` = the count for the whole mini-batch (tokens for
token_mean, responses for seq_mean_token_mean) so that micro-batch losses add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from delta_rlvr.core.masked import masked_mean, masked_sum

Aggregation = Literal["token_mean", "seq_mean_token_mean", "constant"]


@dataclass(frozen=True)
class PolicyLossConfig:
    """Clipping of the surrogate. Defaults: the paper's DAPO settings (0.2 / 0.28, c = 10)."""

    clip_low: float = 0.2
    """eps_low: the ratio's lower clip is 1 - clip_low."""
    clip_high: float = 0.28
    """eps_high: the upper clip is 1 + clip_high (DAPO's clip-higher)."""
    dual_clip: float | None = 10.0
    """c > 1 of dual-clip, capping the loss of A < 0 tokens at -c A; None turns it off."""
    aggregation: Aggregation = "token_mean"
    """token_mean (DAPO), seq_mean_token_mean (GRPO) or constant (Dr. GRPO); see the module docstring."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.clip_low < 1.0:
            raise ValueError(
                f"PolicyLossConfig.clip_low must be in [0, 1), got {self.clip_low}; DAPO uses 0.2"
            )
        if not self.clip_high >= 0.0:
            raise ValueError(
                f"PolicyLossConfig.clip_high must be >= 0, got {self.clip_high}; DAPO uses 0.28"
            )
        if self.dual_clip is not None and not self.dual_clip > 1.0:
            raise ValueError(
                f"PolicyLossConfig.dual_clip must be > 1 or None (off), got {self.dual_clip}; "
                "the released DelTA/DAPO code uses 10"
            )
        if self.aggregation not in ("token_mean", "seq_mean_token_mean", "constant"):
            raise ValueError(
                "PolicyLossConfig.aggregation must be 'token_mean', 'seq_mean_token_mean' or "
                f"'constant', got {self.aggregation!r}"
            )


@dataclass(frozen=True)
class PolicyLoss:
    """loss: 0-d tensor with grad. Statistics are detached 0-d tensors over valid tokens."""

    loss: Tensor
    clip_frac_low: Tensor  # r < 1 - eps_low with A < 0 (the low clip is active)
    clip_frac_high: Tensor  # r > 1 + eps_high with A > 0 (the high clip is active)
    dual_clip_frac: Tensor  # the dual-clip cap is active (A < 0, -A r > -A c)
    approx_kl: Tensor  # mean of (r - 1) - log r, the k3 estimator of KL(old || new)
    ratio_mean: Tensor


def per_token_policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, config: PolicyLossConfig = PolicyLossConfig()
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token clipped surrogate loss (to minimise).

    Args:
        logp: (B, T) log-probs of the sampled tokens under the current policy (with grad).
        old_logp: (B, T) the same under the policy that sampled them (no grad).
        advantages: (B,) per response or (B, T) per token.

    Returns:
        (loss (B, T), ratio (B, T) detached, dual-clip-active (B, T) bool).
    """
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    loss = torch.maximum(-adv * ratio, -adv * clipped)
    dual = torch.zeros_like(loss, dtype=torch.bool)
    if config.dual_clip is not None:
        cap = -adv * config.dual_clip
        dual = (adv < 0) & (loss > cap)
        loss = torch.where(adv < 0, torch.minimum(loss, cap), loss)
    return loss, ratio.detach(), dual


def aggregate(
    loss: Tensor, mask: Tensor, aggregation: Aggregation, normaliser: float | Tensor | None = None
) -> Tensor:
    """Reduce a (B, T) per-token loss to a scalar (see the module docstring)."""
    if aggregation == "token_mean":
        denom = mask.sum().clamp_min(1) if normaliser is None else normaliser
        return masked_sum(loss, mask) / denom
    if aggregation == "seq_mean_token_mean":
        per_seq = torch.where(mask, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
        per_seq = per_seq.sum(-1) / mask.sum(-1).clamp_min(1)
        denom = loss.shape[0] if normaliser is None else normaliser
        return per_seq.sum() / denom
    if aggregation == "constant":
        denom = mask.numel() if normaliser is None else normaliser
        return masked_sum(loss, mask) / denom
    raise ValueError(f"aggregate: unknown aggregation {aggregation!r}")


def mini_batch_normaliser(aggregation: Aggregation, loss_mask: Tensor, max_length: int) -> Tensor | int:
    """The `normaliser` of a mini-batch whose loss is accumulated over micro-batches, so that
    the micro-batch losses add up to the mini-batch's: its loss tokens (token_mean), its
    responses (seq_mean_token_mean), or responses x `max_length`, Dr. GRPO's fixed budget
    (constant). `loss_mask` is the mini-batch's (B, T) mask."""
    if aggregation == "token_mean":
        return loss_mask.sum().clamp_min(1)
    if aggregation == "seq_mean_token_mean":
        return loss_mask.shape[0]
    if aggregation == "constant":
        return loss_mask.shape[0] * max_length
    raise ValueError(f"mini_batch_normaliser: unknown aggregation {aggregation!r}")


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    config: PolicyLossConfig = PolicyLossConfig(),
    *,
    normaliser: float | Tensor | None = None,
) -> PolicyLoss:
    """Clipped surrogate, aggregated, with its statistics. Shapes as `per_token_policy_loss`;
    mask (B, T) bool, True = valid token."""
    loss, ratio, dual = per_token_policy_loss(logp, old_logp, advantages, config)
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    adv = adv.expand_as(ratio)
    low = (ratio < 1.0 - config.clip_low) & (adv < 0)
    high = (ratio > 1.0 + config.clip_high) & (adv > 0)
    log_ratio = (logp - old_logp).detach()
    with torch.no_grad():
        stats = dict(
            clip_frac_low=masked_mean(low.float(), mask),
            clip_frac_high=masked_mean(high.float(), mask),
            dual_clip_frac=masked_mean(dual.float(), mask),
            approx_kl=masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
            ratio_mean=masked_mean(ratio, mask),
        )
    return PolicyLoss(loss=aggregate(loss, mask, config.aggregation, normaliser), **stats)
