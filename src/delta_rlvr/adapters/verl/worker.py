"""``DeltaActorRolloutRefWorker``: verl's actor worker with DelTA in its old-log-prob pass.

One method is overridden, ``compute_log_prob`` (re-registered with verl's own dispatch so the
driver calls it exactly as before). Without ``delta_settings`` in the call it is verl's method.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.utils.profiler import DistProfiler
from verl.workers.engine_workers import ActorRolloutRefWorker

from delta_rlvr.adapters.verl.actor_pass import COEF_KEY, SETTINGS_KEY, check_engine_supported, delta_passes
from delta_rlvr.adapters.verl.settings import DeltaSettings


class DeltaActorRolloutRefWorker(ActorRolloutRefWorker):
    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    @DistProfiler.annotate(color="blue", role="actor_compute_log_prob")
    def compute_log_prob(self, data: TensorDict) -> TensorDict:
        raw = tu.get_non_tensor_data(data=data, key=SETTINGS_KEY, default=None)
        if raw is None:
            return super().compute_log_prob(data)
        settings = DeltaSettings.from_dict(raw)
        engine = self.actor.engine
        check_engine_supported(engine, data)
        reduce = None
        if settings.pooling == "global":
            group = engine.get_data_parallel_group()

            def reduce(t: torch.Tensor) -> torch.Tensor:
                out = t.clone()
                torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM, group=group)
                return out

        calls = iter(range(1 << 30))

        def infer() -> TensorDict | None:
            # The first call is verl's own old-log-prob pass; the others only re-run the forward.
            batch = data.copy()
            if next(calls) == 0:
                return super(DeltaActorRolloutRefWorker, self).compute_log_prob(batch)
            return self.actor.infer_batch(batch)

        output, coef, stats = delta_passes(engine, infer, settings.config, reduce=reduce)
        if output is None:
            return None
        output[COEF_KEY] = coef
        tu.assign_non_tensor(output, delta_metrics=stats.as_metrics("delta/"))
        return output
