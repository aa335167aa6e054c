"""Per-token credit for each training method: advantages (B, T) and the loss mask (B, T).

Every method has the same signature and sits in one visible table, `METHODS`. DelTA's
coefficients are computed before (they need hidden states, see trainer.py) and passed in.

| method         | per-token advantage | tokens in the loss              | aggregation        |
|----------------|---------------------|---------------------------------|--------------------|
| delta          | A x coef            | valid                           | token_mean         |
| dapo           | A                   | valid                           | token_mean         |
| grpo           | A                   | valid                           | seq_mean_token_mean|
| dr_grpo        | A (no std)          | valid                           | constant           |
| forking_tokens | A                   | top 20% entropy of the batch    | token_mean         |
| token_select   | A                   | top/bottom/random 50% by coef   | token_mean         |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from delta_rlvr.core import forking_token_mask, select_tokens
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
    # DelTA: the DAPO loss unchanged, fed A x coef (equal to weighting the token loss, spec 3).
    return Credit(x.advantages[:, None] * x.coef, x.mask)


def forking_tokens(x: CreditInputs, cfg: AlgorithmConfig) -> Credit:
    return Credit(_broadcast(x), forking_token_mask(x.entropy, x.mask, cfg.forking_fraction))


def token_select(x: CreditInputs, cfg: AlgorithmConfig) -> Credit:
    # Ranked among signed tokens (the ones the coefficients discriminate); zero-advantage tokens
    # carry no gradient and are left out of the loss (ledger 21).
    signed = x.mask & (x.advantages != 0)[:, None]
    keep = select_tokens(x.coef, signed, cfg.select_fraction, cfg.select_mode, generator=x.generator)
    return Credit(_broadcast(x), keep)


METHODS: dict[str, Callable[[CreditInputs, AlgorithmConfig], Credit]] = {
    "delta": delta,
    "dapo": plain,
    "grpo": plain,
    "dr_grpo": plain,
    "forking_tokens": forking_tokens,
    "token_select": token_select,
}

AGGREGATION = {"grpo": "seq_mean_token_mean", "dr_grpo": "constant"}
NEEDS_COEFFICIENTS = {"delta", "token_select"}
