"""Token selection masks over a whole batch (paper section 5.2 and the forking-tokens baseline).

- top / bottom / random fraction of tokens ranked by DelTA coefficient: the paper's
  token-selection experiment (train DAPO on 50% of tokens only);
- top fraction by entropy: "DAPO with forking tokens" (20% highest-entropy tokens).

Ranking is over all tokens where `mask` is True, pooled across responses. The number kept is
round(fraction x count), halves rounding up; ties are broken by position (stable sort), so the
mask is a deterministic function of its inputs (and of the generator for "random").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

SelectionMode = Literal["top", "bottom", "random"]


def select_tokens(
    scores: Tensor,
    mask: Tensor,
    fraction: float,
    mode: SelectionMode = "top",
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, T) bool mask keeping `fraction` of the valid tokens by `scores` (B, T).

    top: the highest scores; bottom: the lowest; random: a uniform random subset (scores unused).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"select_tokens: fraction must be in [0, 1], got {fraction}")
    if mode not in ("top", "bottom", "random"):
        raise ValueError(f"select_tokens: mode must be 'top', 'bottom' or 'random', got {mode!r}")
    if scores.shape != mask.shape:
        raise ValueError(
            f"select_tokens: scores {tuple(scores.shape)} and mask {tuple(mask.shape)} differ"
        )
    flat_mask = mask.reshape(-1)
    idx = flat_mask.nonzero().squeeze(-1)
    keep = math.floor(fraction * idx.numel() + 0.5)
    if mode == "random":
        perm = torch.randperm(idx.numel(), generator=generator, device="cpu").to(idx.device)
        chosen = idx[perm[:keep]]
    else:
        values = scores.reshape(-1)[idx].float()
        order = torch.sort(values, descending=(mode == "top"), stable=True).indices
        chosen = idx[order[:keep]]
    out = torch.zeros_like(flat_mask)
    out[chosen] = True
    return out.reshape(mask.shape)


def forking_token_mask(entropy: Tensor, mask: Tensor, fraction: float = 0.2) -> Tensor:
    """(B, T) bool: the `fraction` highest-entropy valid tokens of the batch (default 20%)."""
    return select_tokens(entropy, mask, fraction, "top")
