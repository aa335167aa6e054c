"""Entry point: verl's ``main_ppo`` with DelTA's worker and trainer swapped in.

    python -m delta_rlvr.adapters.verl.main trainer.use_v1=false delta.enable=true <verl overrides>

Same Hydra config as ``verl.trainer.main_ppo`` plus a top-level ``delta`` namespace (add it
with ``+delta.enable=true`` etc. on the command line, see examples/verl/). Only the legacy
trainer (``trainer.use_v1=false``) is supported: the v1 trainer needs TransferQueue, which
``pip install verl`` does not bring.
"""

from __future__ import annotations

import os

import hydra
import ray

from verl.trainer import main_ppo_v0
from verl.trainer.main_ppo import run_ppo
from verl.utils.config import validate_config

from delta_rlvr.adapters.verl.settings import delta_settings

#: Loaded by ``verl/__init__.py`` in every process that imports verl (Ray workers included):
#: verl's external-module mechanism, so the worker class resolves in every Ray process.
EXTERNAL_MODULE = "delta_rlvr.adapters.verl.worker"




def _runner_class():
    base = main_ppo_v0.TaskRunner
    base_cls = getattr(base, "__ray_actor_class__", base)

    class DeltaTaskRunner(base_cls):
        def add_actor_rollout_worker(self, config):
            actor_rollout_cls, group_cls = super().add_actor_rollout_worker(config)
            if not delta_settings(config).enable:
                return actor_rollout_cls, group_cls
            from delta_rlvr.adapters.verl.worker import DeltaActorRolloutRefWorker

            for role, remote_cls in list(self.role_worker_mapping.items()):
                if getattr(remote_cls, "__ray_actor_class__", None) is actor_rollout_cls:
                    self.role_worker_mapping[role] = ray.remote(DeltaActorRolloutRefWorker)
            return DeltaActorRolloutRefWorker, group_cls

        def run(self, config):
            if delta_settings(config).enable:
                from delta_rlvr.adapters.verl.trainer import DeltaRayPPOTrainer

                main_ppo_v0.RayPPOTrainer = DeltaRayPPOTrainer  # this Ray actor's process only
            return super().run(config)

    return ray.remote(DeltaTaskRunner)


@hydra.main(config_path=os.path.join(os.path.dirname(main_ppo_v0.__file__), "config"), config_name="ppo_trainer", version_base=None)
def main(config) -> None:
    settings = delta_settings(config)  # fail fast on a bad delta.* value
    if settings.enable and config.trainer.get("use_v1", True):
        raise ValueError(
            "DelTA runs on verl's legacy trainer; add trainer.use_v1=false to the command line"
        )
    validate_config(config=config, use_reference_policy=main_ppo_v0.need_reference_policy(config),
                    use_critic=main_ppo_v0.need_critic(config))
    modules = [m for m in os.environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    if EXTERNAL_MODULE not in modules:
        os.environ["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules + [EXTERNAL_MODULE])
    run_ppo(config, task_runner_class=_runner_class())


if __name__ == "__main__":
    main()
