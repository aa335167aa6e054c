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
rollout-correction bypass mode (no old-log-prob pass at all). Also refused: policy losses that
are not positively homogeneous in the advantage (``clip_cov``, ``kl_cov``, ``geo_mean``,
``dro``, and any loss not on `HOMOGENEOUS_LOSSES`), and rollout rejection sampling
(``rollout_correction.rollout_rs``), which drops tokens from the loss after the coefficients
were normalised over them.

The frozen gamma (DelTA's assignment temperature) of ``delta.freeze_temperature`` (measured on
the first batch, averaged over data-parallel ranks) is kept here in a `FrozenGamma`, as in the
trainer, sent with every old-log-prob call, and saved in each checkpoint folder as
``delta_state.json`` (key ``frozen_gamma``; older files' ``frozen_temperature`` still loads), so
a resumed run keeps the first run's gamma.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer, compute_advantage
from verl.trainer.ppo.reward import extract_reward
from verl.utils import tensordict_utils as tu
from verl.workers.utils.padding import no_padding_2_padding

from delta_rlvr.adapters.verl.actor_pass import ADVANTAGE_KEY, COEF_KEY, GAMMA_KEY, SETTINGS_KEY
from delta_rlvr.adapters.verl.settings import DeltaSettings, delta_settings
from delta_rlvr.adapters.verl.worker import INITIAL_GAMMA_KEY, METRICS_KEY
from delta_rlvr.core.frozen import FrozenGamma

#: estimators whose advantage needs values or old log-probs, both computed after the pass.
NEEDS_LATER_INPUTS = ("gae", "optimal_token_baseline", "tir_optimal_token_baseline")

#: verl 0.9.1 policy losses (verl/trainer/ppo/core_algos.py, register_policy_loss) whose
#: per-token loss is positively homogeneous in the advantage: the clip branch, SAPO's gate
#: temperature and DPPO's trust-region mask depend on the sign of A only, so
#: loss(A x coef) = coef x loss(A) for coef > 0. Not so clip_cov / kl_cov (tokens picked by a
#: covariance involving A), geo_mean (a geometric mean over the response's tokens) and dro
#: (a quadratic log-ratio term that does not scale with A).
HOMOGENEOUS_LOSSES = ("vanilla", "gspo", "sapo", "gpg", "cispo", "dppo_tv", "dppo_kl")

#: file in each checkpoint folder (global_step_N/) holding the adapter's state
STATE_FILE = "delta_state.json"
#: the key of the frozen gamma in `STATE_FILE`, and the key older checkpoints used for it
GAMMA_STATE_KEY = "frozen_gamma"
OLD_GAMMA_STATE_KEY = "frozen_temperature"


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
    if rollout_corr is not None and rollout_corr.get("rollout_rs", None):
        raise ValueError(
            f"DelTA (delta.enable=true) does not support algorithm.rollout_correction.rollout_rs="
            f"{rollout_corr.get('rollout_rs')!r}: rejection sampling rewrites response_mask after the "
            "coefficient pass, so the coefficients would be normalised over tokens the loss drops (and a "
            "wholly rejected response has no valid token left). Set algorithm.rollout_correction.rollout_rs=null "
            "(importance weights, rollout_is, are supported)."
        )
    actor = config.get("actor_rollout_ref", {}).get("actor", {}) or {}
    loss_mode = (actor.get("policy_loss", {}) or {}).get("loss_mode", "vanilla")
    if loss_mode not in HOMOGENEOUS_LOSSES:
        raise ValueError(
            f"DelTA (delta.enable=true) does not support actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode!r}: "
            "DelTA is handed to verl as per-token advantages A x coef, which equals weighting the per-token loss "
            f"only for losses positively homogeneous in A. Use one of {', '.join(HOMOGENEOUS_LOSSES)} "
            "('vanilla' is the paper's DAPO loss)."
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
        self._delta_metrics: dict[str, float] = {}
        self._delta_gamma = FrozenGamma(self.delta.config.freeze_temperature)  # frozen (gamma+, gamma-)
        if self.delta.enable:
            check_trainer_supported(self.config)
            print(self.delta.describe(), flush=True)  # the driver log's proof that DelTA runs

    def _compute_old_log_prob(self, batch: DataProto):
        if not self.delta.enable:
            return super()._compute_old_log_prob(batch)
        batch.batch[ADVANTAGE_KEY] = outcome_advantages(batch, self.config)
        batch.meta_info[SETTINGS_KEY] = self.delta.as_dict()
        gamma = self._delta_gamma.current()
        if gamma is not None:
            batch.meta_info[GAMMA_KEY] = {"pos": float(gamma[0]), "neg": float(gamma[1])}
        worker_group = self.actor_rollout_wg
        captured: dict[str, Any] = {}
        # verl binds worker-group methods per instance (WorkerGroup._bind_worker_method, setattr):
        # wrap that attribute for this one call and put the very same object back afterwards.
        upstream = worker_group.compute_log_prob

        def compute_log_prob(data):
            captured["data"], captured["out"] = data, upstream(data)
            return captured["out"]

        worker_group.compute_log_prob = compute_log_prob
        try:
            old_log_prob, mfu = super()._compute_old_log_prob(batch)
        finally:
            worker_group.compute_log_prob = upstream
            batch.meta_info.pop(SETTINGS_KEY, None)
            batch.meta_info.pop(GAMMA_KEY, None)
        out = captured["out"]
        if COEF_KEY not in out.keys():
            raise RuntimeError(
                "DelTA: the actor workers returned no coefficients: they are not DeltaActorRolloutRefWorker. "
                "Launch with python -m delta_rlvr.adapters.verl.main (it swaps the worker class in)."
            )
        coef = no_padding_2_padding(tu.get(out, COEF_KEY), captured["data"])  # (B, R)
        old_log_prob.batch[COEF_KEY] = coef.float() * batch.batch["response_mask"].float()
        # Already averaged over data-parallel ranks by the workers (verl keeps rank 0's value).
        self._delta_metrics = dict(tu.get(out, METRICS_KEY) or {})
        if gamma is None and self._delta_gamma.enabled:  # the first batch of a frozen run: keep its gamma^(0)
            initial = tu.get(out, INITIAL_GAMMA_KEY)
            self._delta_gamma.observe(torch.tensor([float(initial["pos"]), float(initial["neg"])], dtype=torch.float64))
        return old_log_prob, mfu

    def _update_actor(self, batch: DataProto) -> DataProto:
        if not self.delta.enable:
            return super()._update_actor(batch)
        rewrite_advantages(batch)
        output = super()._update_actor(batch)
        output.meta_info["metrics"].update(self._delta_metrics)
        return output

    # ----------------------------------------------------------------------------------------
    # The adapter's own state in verl's checkpoints.

    def _save_checkpoint(self):
        result = super()._save_checkpoint()
        if self.delta.enable:
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
            save_state(folder, {GAMMA_STATE_KEY: self._delta_gamma.state()})
        return result

    def _load_checkpoint(self):
        result = super()._load_checkpoint()
        if self.delta.enable and self.global_steps > 0:
            state = load_state(self._resumed_folder())
            value = state.get(GAMMA_STATE_KEY, state.get(OLD_GAMMA_STATE_KEY))  # older checkpoints: the latter
            if value is not None:
                self._delta_gamma.load(value)
        return result

    def _resumed_folder(self) -> str:
        """The folder ``RayPPOTrainer._load_checkpoint`` resumed from (same resolution rules)."""
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path" and trainer.get("resume_from_path"):
            folder = trainer.resume_from_path
        else:
            folder = os.path.join(trainer.default_local_dir, f"global_step_{self.global_steps}")
        return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)


def save_state(folder: str, state: dict[str, Any]) -> None:
    """Write ``STATE_FILE`` into a checkpoint folder atomically (temp file, then rename)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, STATE_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def load_state(folder: str) -> dict[str, Any]:
    """The adapter's state of a checkpoint folder; {} for checkpoints written without DelTA."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise RuntimeError(f"DelTA: cannot read {path} ({err}); delete it to re-measure the frozen gamma") from None
