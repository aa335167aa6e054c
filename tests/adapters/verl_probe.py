"""A probe loaded into every verl process of a real ``python -m delta_rlvr.adapters.verl.main``
launch, through verl's own external-module mechanism (``VERL_USE_EXTERNAL_MODULES``, read in
``verl/__init__.py``), when ``DELTA_VERL_PROBE`` names an output folder.

Inside verl's TaskRunner Ray actor it wraps ``RayPPOTrainer.init_workers`` (the class the built
trainer inherits from) and records, from there:
- which trainer class ``TaskRunner.run`` built, and which worker class each role maps to;
- where verl's own ``init_workers`` stops on a machine without GPUs (it is called first);
- then it drives one PPO step's DelTA path as ``fit`` does it: the trainer's own
  ``_compute_old_log_prob`` and ``_update_actor``, twice, with the actor worker group replaced by
  one CPU instance of the worker class the TaskRunner registered (tests/adapters/verl_cpu.py),
  so the worker runs with exactly the settings the trainer sent.
``fit`` is then skipped, so the launch exits 0. Results: ``report.json`` and ``tensors.pt``.
"""

from __future__ import annotations

import json
import os

PROBE_ENV = "DELTA_VERL_PROBE"


def _actor_class(remote) -> type:
    """The Python class behind a ``ray.remote`` actor class."""
    cls = getattr(remote, "__ray_actor_class__", None)
    if cls is None:
        cls = remote.__ray_metadata__.modified_class
    while cls.__name__ == "Class" or cls.__module__.startswith("ray."):  # Ray's modified subclass
        cls = cls.__bases__[0]
    return cls


def _install() -> None:
    out = os.environ.get(PROBE_ENV)
    if not out:
        return
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    if getattr(RayPPOTrainer, "_delta_probe", False):
        return
    RayPPOTrainer._delta_probe = True
    original = RayPPOTrainer.init_workers

    def init_workers(self):
        report = {"trainer": type(self).__name__, "pid": os.getpid(),
                  "roles": {str(role): _actor_class(remote).__name__ for role, remote in self.role_worker_mapping.items()}}
        try:
            original(self)
            report["init_workers"] = "completed"
        except Exception as err:  # no GPU here: verl stops at worker placement
            report["init_workers"] = f"{type(err).__name__}: {err}"
        report.update(_drive(self, out))
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)

    RayPPOTrainer.init_workers = init_workers
    RayPPOTrainer.fit = lambda self: print("probe: fit() skipped", flush=True)


def _drive(trainer, out: str) -> dict:
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM
    from verl.trainer.ppo.ray_trainer import Role, compute_advantage
    from verl.utils import tensordict_utils as tu
    from verl_cpu import LocalWorkerGroup, cpu_actor_worker, rollout_proto

    from delta_rlvr.adapters.verl.actor_pass import SETTINGS_KEY

    config = trainer.config
    role = Role.ActorRolloutRef if Role.ActorRolloutRef in trainer.role_worker_mapping else Role.ActorRollout
    worker_cls = _actor_class(trainer.role_worker_mapping[role])
    model = AutoModelForCausalLM.from_pretrained(config.actor_rollout_ref.model.path, dtype=torch.float32)
    group = LocalWorkerGroup(cpu_actor_worker(worker_cls, model, remove_padding=False, max_token_len=64))
    trainer.actor_rollout_wg = group
    rows = pd.read_parquet(config.data.train_files if isinstance(config.data.train_files, str)
                           else list(config.data.train_files)[0])
    questions = [p[0]["content"] for p in rows["prompt"]]
    golds = [r["ground_truth"] for r in rows["reward_model"]]
    n = config.actor_rollout_ref.rollout.n
    steps = []
    for step in range(2):
        proto = rollout_proto(trainer.tokenizer, questions[2 * step : 2 * step + 2], golds[2 * step : 2 * step + 2],
                              n=n, temperature=config.actor_rollout_ref.rollout.temperature)
        inputs = {k: proto.batch[k].clone() for k in proto.batch.keys()}
        old, _ = trainer._compute_old_log_prob(proto)  # as fit(): old log-probs (DelTA pass inside)
        batch = proto.union(old)
        batch.batch["token_level_rewards"] = batch.batch["rm_scores"]
        batch = compute_advantage(batch, adv_estimator=config.algorithm.adv_estimator, gamma=config.algorithm.gamma,
                                  lam=config.algorithm.lam, num_repeat=n,
                                  norm_adv_by_std_in_grpo=config.algorithm.get("norm_adv_by_std_in_grpo", True),
                                  config=config.algorithm)
        plain = batch.batch["advantages"].clone()
        coef = batch.batch["delta_coef"].clone() if "delta_coef" in batch.batch.keys() else None
        output = trainer._update_actor(batch)  # A x coef written, then verl's own update call
        sent = group.updates[-1]
        from verl.workers.utils.padding import no_padding_2_padding

        steps.append({"inputs": inputs, "coef": coef, "advantages": plain,
                      "update_advantages": no_padding_2_padding(sent["advantages"], sent) if sent["advantages"].is_nested
                      else sent["advantages"],
                      "metrics": dict(output.meta_info["metrics"])})
    torch.save(steps, os.path.join(out, "tensors.pt"))
    settings = tu.get_non_tensor_data(group.sent[0], SETTINGS_KEY, None)
    return {"worker": worker_cls.__name__, "settings_received": settings, "steps": len(steps),
            "compute_log_prob_calls": len(group.sent), "update_calls": len(group.updates),
            "metrics": {k: v for k, v in steps[-1]["metrics"].items() if k.startswith("delta/")}}


_install()
