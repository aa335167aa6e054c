"""Entry point: verl's ``main_ppo`` with DelTA's worker and trainer swapped in.

    python -m delta_rlvr.adapters.verl.main trainer.use_v1=false delta.enable=true <verl overrides>

Same Hydra config as ``verl.trainer.main_ppo`` plus a top-level ``delta`` namespace (add it
with ``+delta.enable=true`` etc. on the command line, see examples/verl/). Only the legacy
trainer (``trainer.use_v1=false``) is supported: the v1 trainer needs TransferQueue, which
``pip install verl`` does not bring.
"""

from __future__ import annotations

import os
import sys

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

            swapped = 0
            for role, remote_cls in list(self.role_worker_mapping.items()):
                if getattr(remote_cls, "__ray_actor_class__", None) is actor_rollout_cls:
                    self.role_worker_mapping[role] = ray.remote(DeltaActorRolloutRefWorker)
                    swapped += 1
            if not swapped:
                raise RuntimeError(
                    f"DelTA: verl's TaskRunner registered no {actor_rollout_cls.__name__} role to swap for "
                    "DeltaActorRolloutRefWorker; this verl version is not the one the adapter supports (0.9.1)"
                )
            return DeltaActorRolloutRefWorker, group_cls

        def run(self, config):
            if delta_settings(config).enable:
                install_trainer(super().run)
            return super().run(config)

    return ray.remote(DeltaTaskRunner)


def install_trainer(run) -> None:
    """Make verl's ``TaskRunner.run`` build ``DeltaRayPPOTrainer``.

    ``run`` looks ``RayPPOTrainer`` up in its own globals. Ray ships the TaskRunner class to its
    actor by value (cloudpickle: the class is reached through the ActorClass wrapper, not by
    its module name), so those globals are a copy made when the class was unpickled, not
    ``vars(main_ppo_v0)``: rebinding the module attribute would change nothing. The name is
    rebound in the dictionary ``run`` actually reads, and checked.
    """
    from delta_rlvr.adapters.verl.trainer import DeltaRayPPOTrainer

    fn = getattr(run, "__func__", run)
    if "RayPPOTrainer" not in fn.__code__.co_names:
        raise RuntimeError(
            "DelTA: verl's TaskRunner.run no longer builds its trainer through the name RayPPOTrainer; "
            "this verl version is not the one the adapter supports (0.9.1). Stopping rather than training stock verl."
        )
    fn.__globals__["RayPPOTrainer"] = DeltaRayPPOTrainer
    main_ppo_v0.RayPPOTrainer = DeltaRayPPOTrainer  # the module too, for code that imports the name later


def check_launch(config) -> None:
    """Everything about DelTA that can be refused before Ray starts (ValueError naming the setting)."""
    settings = delta_settings(config)
    if not settings.enable:
        return
    if config.trainer.get("use_v1", True):
        raise ValueError("DelTA runs on verl's legacy trainer; add trainer.use_v1=false to the command line")
    from delta_rlvr.adapters.verl.trainer import check_trainer_supported

    check_trainer_supported(config)
    settings.tiers()  # a delta.spill_dir that cannot be created here is refused before Ray starts
    if config.actor_rollout_ref.model.get("use_fused_kernels", False):
        raise ValueError(
            "DelTA (delta.enable=true) does not support actor_rollout_ref.model.use_fused_kernels=True: the fused "
            "kernel reads lm_head.weight directly, so the LM head's input is never seen. Set it to False."
        )


@hydra.main(config_path=os.path.join(os.path.dirname(main_ppo_v0.__file__), "config"), config_name="ppo_trainer", version_base=None)
def main(config) -> None:
    try:
        check_launch(config)  # fail fast, on the driver, on a bad delta.* value or an unsupported setting
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    validate_config(config=config, use_reference_policy=main_ppo_v0.need_reference_policy(config),
                    use_critic=main_ppo_v0.need_critic(config))
    modules = [m for m in os.environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    if EXTERNAL_MODULE not in modules:
        os.environ["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules + [EXTERNAL_MODULE])
    run_ppo(config, task_runner_class=_runner_class())


if __name__ == "__main__":
    main()
