"""DelTA inside verl (0.9.x, legacy ``RayPPOTrainer`` path: ``trainer.use_v1=false``).

Install with ``pip install 'delta-rlvr[verl]'``; launch with
``python -m delta_rlvr.adapters.verl.main <verl overrides> delta.enable=true``
(examples/verl/). The pieces, each importable on its own:

- ``settings``: the ``delta`` config namespace -> ``DeltaSettings`` (no verl import).
- ``actor_pass``: the coefficient pass inside the engine's old-log-prob forward (CPU-testable).
- ``worker``: ``DeltaActorRolloutRefWorker``, the Ray worker running that pass.
- ``trainer``: ``DeltaRayPPOTrainer``, advantages before the pass, A x coef before the update.
- ``main``: the entry point that swaps both into verl's ``TaskRunner``.
- ``plan``: where a launch's packed cache lands (GPU, host, disk, or streamed), from its settings.

See docs/adapters.md for the private verl names relied on (read from verl 0.9.1).
"""

from delta_rlvr.adapters.verl.settings import DeltaSettings, delta_settings

__all__ = ["DeltaSettings", "delta_settings"]
