"""What each training method is, in one table (`METHODS`): its per-token credit, its loss
aggregation, its advantage estimator, and whether it needs DelTA's coefficients.

| method         | per-token advantage | tokens in the loss              | aggregation         | estimator | coefficients |
|----------------|---------------------|---------------------------------|---------------------|-----------|--------------|
| delta          | A x coef            | valid                           | (loss.aggregation)  | grpo      | yes          |
| dapo           | A                   | valid                           | (loss.aggregation)  | grpo      | no           |
| grpo           | A                   | valid                           | seq_mean_token_mean | grpo      | no           |
| dr_grpo        | A (no std)          | valid                           | constant            | dr_grpo   | no           |
| forking_tokens | A                   | top 20% entropy of the batch    | (loss.aggregation)  | grpo      | no           |
| token_select   | A                   | top/bottom/random 50% by coef   | (loss.aggregation)  | grpo      | yes          |

"(loss.aggregation)" is `algorithm.loss.aggregation`, token_mean (DAPO's) by default. A credit
function has one signature, `(CreditInputs, AlgorithmConfig) -> Credit`; the coefficients are
computed before it, in the old-policy pass (train/old_policy.py), which needs hidden states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from delta_rlvr.core import forking_token_mask, select_tokens
from delta_rlvr.core.advantages import AdvantageEstimator
from delta_rlvr.core.losses import Aggregation

if TYPE_CHECKING:  # config.py reads this table to validate a method's settings
    from delta_rlvr.train.config import AlgorithmConfig


@dataclass(frozen=True)
class CreditInputs:
    advantages: Tensor  # (B,)
    mask: Tensor  # (B, T) bool, valid completion tokens
    entropy: Tensor  # (B, T) old-policy entropy
    coef: Tensor | None  # (B, T) DelTA coefficients, when the method uses them
    generator: torch.Generator


@dataclass(frozen=True)
class Credit:
    token_advantages: Tensor  # (B, T)
    loss_mask: Tensor  # (B, T) bool


def _broadcast(x: CreditInputs) -> Tensor:
    return x.advantages[:, None].expand_as(x.mask).float()


def plain(x: CreditInputs, cfg: AlgorithmConfig) -> Credit:
    return Credit(_broadcast(x), x.mask)


def delta(x: CreditInputs, cfg: AlgorithmConfig) -> Credit:
    # DelTA: the DAPO loss unchanged, fed A x coef (equal to weighting the token loss, the DelTA paper's method).
    return Credit(x.advantages[:, None] * x.coef, x.mask)


def forking_tokens(x: CreditInputs, cfg: AlgorithmConfig) -> Credit:
    return Credit(_broadcast(x), forking_token_mask(x.entropy, x.mask, cfg.forking_fraction))


def token_select(x: CreditInputs, cfg: AlgorithmConfig) -> Credit:
    # Ranked among signed tokens (the ones the coefficients discriminate); zero-advantage tokens
    # carry no gradient and are left out of the loss (ledger 21).
    signed = x.mask & (x.advantages != 0)[:, None]
    keep = select_tokens(x.coef, signed, cfg.select_fraction, cfg.select_mode, generator=x.generator)
    return Credit(_broadcast(x), keep)


@dataclass(frozen=True)
class MethodSpec:
    """A training method: everything the step needs to know about it."""

    credit: Callable[[CreditInputs, AlgorithmConfig], Credit]
    """Per-token advantages and loss mask."""
    aggregation: Aggregation | None = None
    """The loss reduction the method is defined with; None = algorithm.loss.aggregation."""
    estimator: AdvantageEstimator = "grpo"
    """Group advantages: "grpo" (mean and std) or "dr_grpo" (mean only)."""
    needs_coefficients: bool = False
    """The old-policy pass also computes DelTA's coefficients (and keeps hidden states for them)."""


METHODS: dict[str, MethodSpec] = {
    "delta": MethodSpec(delta, needs_coefficients=True),
    "dapo": MethodSpec(plain),
    "grpo": MethodSpec(plain, aggregation="seq_mean_token_mean"),
    "dr_grpo": MethodSpec(plain, aggregation="constant", estimator="dr_grpo"),
    "forking_tokens": MethodSpec(forking_tokens),
    "token_select": MethodSpec(token_select, needs_coefficients=True),
}
