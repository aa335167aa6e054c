"""``DeltaActorRolloutRefWorker``: verl's actor worker with DelTA in its old-log-prob pass.

One method is overridden, ``compute_log_prob`` (re-registered with verl's own dispatch so the
driver calls it exactly as before). Without ``delta_settings`` in the call it is verl's method
(the reference-policy call of LoRA runs, the trainer's validation, any stock caller).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.utils.profiler import DistProfiler
from verl.workers.engine_workers import ActorRolloutRefWorker

from delta_rlvr.adapters.common import mean_over_ranks
from delta_rlvr.adapters.verl.actor_pass import (
    COEF_KEY,
    GAMMA_KEY,
    SETTINGS_KEY,
    PassOptions,
    check_engine_supported,
    delta_passes,
)
from delta_rlvr.adapters.verl.settings import DeltaSettings

#: non-tensor output keys: the statistics (averaged over data-parallel ranks) and gamma^(0),
#: the batch's measured assignment temperature ({"pos": float, "neg": float})
METRICS_KEY = "delta_metrics"
INITIAL_GAMMA_KEY = "delta_initial_gamma"


def _group_reduce(group, device):
    """Sum all-reduce over ``group`` on the collective's device (NCCL needs CUDA tensors)."""

    def reduce(t: torch.Tensor) -> torch.Tensor:
        out = t.detach().to(device=device, copy=True)
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM, group=group)
        return out.to(t.device)

    return reduce


class DeltaActorRolloutRefWorker(ActorRolloutRefWorker):
    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    @DistProfiler.annotate(color="blue", role="actor_compute_log_prob")
    def compute_log_prob(self, data: TensorDict) -> TensorDict:
        raw = tu.get_non_tensor_data(data=data, key=SETTINGS_KEY, default=None)
        if raw is None:
            return super().compute_log_prob(data)
        return delta_compute_log_prob(self, data, raw)


def delta_compute_log_prob(worker: ActorRolloutRefWorker, data: TensorDict, raw: dict) -> TensorDict | None:
    """The body of ``DeltaActorRolloutRefWorker.compute_log_prob`` with DelTA settings ``raw``."""
    settings = DeltaSettings.from_dict(raw)
    actor = worker.actor  # verl's TrainingWorker
    engine = actor.engine
    check_engine_supported(engine, data, use_fused_kernels=bool(actor.engine_config.use_fused_kernels))
    if torch.distributed.is_initialized():
        group = engine.get_data_parallel_group()
        dp_reduce = _group_reduce(group, _collective_device(group))
    else:  # one process
        def dp_reduce(t: torch.Tensor) -> torch.Tensor:
            return t.clone()
    frozen = tu.get_non_tensor_data(data=data, key=GAMMA_KEY, default=None)
    gamma = None if frozen is None else torch.tensor([frozen["pos"], frozen["neg"]], dtype=torch.float64)
    def infer() -> TensorDict | None:
        # verl's own old-log-prob pass (the first call); after a spill, the re-forwards go
        # through the same method, so they see exactly what it sees (router replay included).
        return ActorRolloutRefWorker.compute_log_prob(worker, data.copy())

    # One cache per sequence-parallel group: its output rank keeps it (see actor_pass).
    holds_cache = bool(engine.is_mp_src_rank_with_outputs())
    result = delta_passes(
        engine, infer, settings.config,
        options=PassOptions(tiers=tuple(settings.tiers()), holds_cache=holds_cache),
        reduce=dp_reduce if settings.pooling == "global" else None,
        gamma=gamma,
    )
    if not holds_cache:
        # verl's pass returns nothing here; the data-parallel group of this SP index holds only
        # such ranks, so none of them joins the statistics' all-reduce below.
        return None
    metrics = result.stats.as_metrics("delta/")
    metrics["delta/forwards"] = float(result.forwards)
    metrics["delta/cache_mib"] = result.cache_peak_bytes / 2**20
    for kind, name in (("device", "gpu"), ("host", "host"), ("disk", "disk")):
        metrics[f"delta/cache_gib_{name}"] = result.cache_peak_by_kind[kind] / 2**30
    gamma0 = result.stats.gamma[0].double().tolist()
    metrics["_gamma0_pos"], metrics["_gamma0_neg"] = gamma0
    metrics = mean_over_ranks(metrics, dp_reduce)  # every rank's statistics, not rank 0's alone
    initial = {"pos": metrics.pop("_gamma0_pos"), "neg": metrics.pop("_gamma0_neg")}  # a dict: lists become stacks
    output = result.output
    if output is None:
        return None
    output[COEF_KEY] = result.coef
    tu.assign_non_tensor(output, **{METRICS_KEY: metrics, INITIAL_GAMMA_KEY: initial})
    return output


def _collective_device(group) -> torch.device:
    """Where the group's collectives run: CPU for gloo, the current accelerator otherwise."""
    if torch.distributed.get_backend(group) == "gloo":
        return torch.device("cpu")
    from verl.utils.device import get_device_id, get_device_name

    return torch.device(get_device_name(), get_device_id())
