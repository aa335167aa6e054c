"""``DeltaRayPPOTrainer``: verl's ``RayPPOTrainer`` with DelTA's advantages (verl 0.9.1).

Upstream step order: generate -> reward -> old log-prob -> ref -> advantages -> update. DelTA
needs the advantages during the old-log-prob pass. Two hooks, no copy of ``fit``:

1. ``_compute_old_log_prob``: computes the advantages first, with verl's own
   ``compute_advantage`` on a shallow copy of the batch (the rewards are final by then), sends
   them and the ``delta`` settings with the old-log-prob call, and keeps the returned coef.
2. ``_update_actor``: checks that ``fit``'s advantages are the ones the coefficients were
   computed from, writes A x coef into ``batch["advantages"]`` and adds ``delta/*`` metrics.

Refused (advantages would depend on what the old-log-prob pass has not computed yet): GAE
(critic values), KL-in-reward (reference log-probs), estimators that read old log-probs, and
rollout-correction bypass mode (no old-log-prob pass at all).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer, compute_advantage
from verl.trainer.ppo.reward import extract_reward
from verl.utils import tensordict_utils as tu

from delta_rlvr.adapters.verl.actor_pass import ADVANTAGE_KEY, COEF_KEY, SETTINGS_KEY
from delta_rlvr.adapters.verl.settings import DeltaSettings, delta_settings

#: estimators whose advantage needs values or old log-probs, both computed after the pass.
NEEDS_LATER_INPUTS = ("gae", "optimal_token_baseline", "tir_optimal_token_baseline")


def check_trainer_supported(config: Any) -> None:
    estimator = str(getattr(config.algorithm.adv_estimator, "value", config.algorithm.adv_estimator))
    if estimator in NEEDS_LATER_INPUTS:
        raise ValueError(
            f"DelTA (delta.enable=true) needs the advantages before the old-log-prob pass, but "
            f"algorithm.adv_estimator={estimator} needs critic values or old log-probs first; use an "
            "outcome estimator such as algorithm.adv_estimator=grpo"
        )
    if config.algorithm.get("use_kl_in_reward", False):
        raise ValueError(
            "DelTA (delta.enable=true) needs the advantages before the old-log-prob pass; "
            "algorithm.use_kl_in_reward=True makes them depend on reference log-probs computed later. "
            "Set algorithm.use_kl_in_reward=False (use actor_rollout_ref.actor.use_kl_loss for a KL term)."
        )
    rollout_corr = config.algorithm.get("rollout_correction", None)
    if rollout_corr is not None and rollout_corr.get("bypass_mode", False):
        raise ValueError(
            "DelTA (delta.enable=true) computes its coefficients in the old-log-prob pass, which "
            "algorithm.rollout_correction.bypass_mode=True skips; set it to False"
        )


def outcome_advantages(batch: DataProto, config: Any) -> torch.Tensor:
    """(B,) per-response advantages, computed as ``fit`` will compute them (same function)."""
    reward_tensor, _ = extract_reward(batch)  # (B, R) token-level scores
    probe = DataProto.from_dict(
        tensors={"token_level_rewards": reward_tensor, "response_mask": batch.batch["response_mask"]},
        non_tensors={k: v for k, v in batch.non_tensor_batch.items() if k == "uid"},
    )
    if "reward_baselines" in batch.batch.keys():
        probe.batch["reward_baselines"] = batch.batch["reward_baselines"]
    probe = compute_advantage(
        probe,
        adv_estimator=config.algorithm.adv_estimator,
        gamma=config.algorithm.gamma,
        lam=config.algorithm.lam,
        num_repeat=config.actor_rollout_ref.rollout.n,
        norm_adv_by_std_in_grpo=config.algorithm.get("norm_adv_by_std_in_grpo", True),
        config=config.algorithm,
    )
    return per_response(probe.batch["advantages"], batch.batch["response_mask"], "algorithm.adv_estimator")


def per_response(token_advantages: torch.Tensor, response_mask: torch.Tensor, setting: str) -> torch.Tensor:
    """(B, R) advantages constant over each response's valid tokens -> (B,); raise otherwise."""
    mask = response_mask.bool()
    first = torch.where(mask.any(1), mask.float().argmax(1), torch.zeros_like(mask[:, 0], dtype=torch.long))
    value = token_advantages.gather(1, first.unsqueeze(1)).squeeze(1)
    spread = torch.where(mask, (token_advantages - value.unsqueeze(1)).abs(), torch.zeros_like(token_advantages))
    if bool((spread > 1e-6 * (1 + value.abs().unsqueeze(1))).any()):
        raise ValueError(
            f"DelTA takes one advantage per response, but {setting} produced advantages that vary "
            "along a response; use an outcome estimator such as grpo"
        )
    return torch.where(mask.any(1), value, torch.zeros_like(value)).float()


def rewrite_advantages(batch: DataProto) -> None:
    """In place: ``batch["advantages"]`` (B, R) <- A x coef, after checking A is the one the
    coefficients used. Removes the DelTA keys the old-log-prob pass left in the batch."""
    coef = batch.batch.pop(COEF_KEY)  # (B, R) float32, 0 at invalid tokens
    used = batch.batch.pop(ADVANTAGE_KEY)  # (B,)
    mask = batch.batch["response_mask"]
    now = per_response(batch.batch["advantages"], mask, "algorithm.adv_estimator")
    if not torch.allclose(now, used, rtol=1e-5, atol=1e-6):
        raise RuntimeError(
            "DelTA: the advantages fit() computed differ from those the coefficients were computed "
            "from (a reward or advantage setting that changes between the two?); max difference "
            f"{float((now - used).abs().max()):.3g}"
        )
    batch.batch["advantages"] = batch.batch["advantages"] * coef


class DeltaRayPPOTrainer(RayPPOTrainer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delta: DeltaSettings = delta_settings(self.config)
        if self.delta.enable:
            check_trainer_supported(self.config)
        self._delta_metrics: dict[str, float] = {}

    def _compute_old_log_prob(self, batch: DataProto):
        if not self.delta.enable:
            return super()._compute_old_log_prob(batch)
        batch.batch[ADVANTAGE_KEY] = outcome_advantages(batch, self.config)
        batch.meta_info[SETTINGS_KEY] = self.delta.as_dict()
        worker_group = self.actor_rollout_wg
        captured: dict[str, Any] = {}
        upstream = worker_group.compute_log_prob

        def compute_log_prob(data):
            captured["data"], captured["out"] = data, upstream(data)
            return captured["out"]

        worker_group.compute_log_prob = compute_log_prob  # this call only; removed below
        try:
            old_log_prob, mfu = super()._compute_old_log_prob(batch)
        finally:
            del worker_group.compute_log_prob
            batch.meta_info.pop(SETTINGS_KEY, None)
        from verl.workers.utils.padding import no_padding_2_padding

        coef = no_padding_2_padding(tu.get(captured["out"], COEF_KEY), captured["data"])  # (B, R)
        old_log_prob.batch[COEF_KEY] = coef.float() * batch.batch["response_mask"].float()
        per_rank = tu.get(captured["out"], "delta_metrics")
        self._delta_metrics = _mean_over_ranks(per_rank)
        return old_log_prob, mfu

    def _update_actor(self, batch: DataProto) -> DataProto:
        if not self.delta.enable:
            return super()._update_actor(batch)
        rewrite_advantages(batch)
        output = super()._update_actor(batch)
        output.meta_info["metrics"].update(self._delta_metrics)
        return output


def _mean_over_ranks(per_rank: Any) -> dict[str, float]:
    """Worker outputs concatenate non-tensor values across ranks: a dict or a list of dicts."""
    items = per_rank if isinstance(per_rank, list | tuple) else [per_rank]
    items = [m for m in items if isinstance(m, dict)]
    if not items:
        return {}
    keys = sorted(set().union(*items))
    return {k: float(np.nanmean([m.get(k, np.nan) for m in items])) for k in keys}
