"""Group-relative advantages (the DAPO objective DelTA builds on).

GRPO / DAPO: A_i = (R_i - mean_g(R)) / (std_g(R) + eps), std unbiased (torch.std's default),
eps = 1e-6. Dr.GRPO drops the division: A_i = R_i - mean_g(R).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

AdvantageEstimator = Literal["grpo", "dr_grpo"]
STD_EPS = 1e-6


def group_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    estimator: AdvantageEstimator = "grpo",
    *,
    eps: float = STD_EPS,
) -> Tensor:
    """One advantage per response from its reward and its group (prompt).

    Args:
        rewards: (B,) float rewards.
        group_ids: (B,) integer id of each response's group; any values, any order.
        estimator: "grpo" (std-normalised; GRPO and DAPO) or "dr_grpo" (mean-centred only).
        eps: added to the std before dividing.

    Returns:
        (B,) float32 advantages. A group of one response, or whose rewards are all equal, gets
        0 (its unbiased std is undefined or 0 and the centred reward is 0).
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"group_advantages: rewards and group_ids must both have shape (B,), got "
            f"{tuple(rewards.shape)} and {tuple(group_ids.shape)}"
        )
    if estimator not in ("grpo", "dr_grpo"):
        raise ValueError(f"group_advantages: estimator must be 'grpo' or 'dr_grpo', got {estimator!r}")
    r = rewards.double()
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    count = torch.zeros(n_groups, dtype=torch.float64, device=r.device).index_add_(
        0, inverse, torch.ones_like(r)
    )
    mean = torch.zeros_like(count).index_add_(0, inverse, r) / count
    centred = r - mean[inverse]
    if estimator == "dr_grpo":
        return centred.float()
    sq = torch.zeros_like(count).index_add_(0, inverse, centred.square())
    std = (sq / (count - 1).clamp_min(1)).sqrt()  # unbiased; a group of one gets 0
    return (centred / (std[inverse] + eps)).float()
