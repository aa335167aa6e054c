"""verl's actor worker on CPU: its own methods around a plain module, minus FSDP, CUDA and NCCL.

What runs is verl's code (verl 0.9.1):
- ``FSDPEngineWithLMHead.prepare_model_inputs`` / ``prepare_model_outputs`` /
  ``_gather_and_unpad_packed`` (the engine's forward I/O, log-probs at the rollout temperature),
- ``verl.workers.engine.utils.prepare_micro_batches`` and ``postprocess_batch_func`` (micro
  batches, dynamic batch sizes and their reordering back to sample order),
- ``TrainingWorker.infer_batch`` and ``_postprocess_output`` (the old-log-prob entry of the
  training worker), and ``ActorRolloutRefWorker.compute_log_prob`` / the DelTA worker's.

What the stand-ins replace, and why they must: ``FSDPEngine.forward_backward_batch`` and
``forward_step`` call ``verl.utils.device.get_device_id()``, which is
``torch.cuda.current_device()`` on every verl platform (no CPU platform in 0.9.1), and all-reduce
over NCCL groups. `CpuEngine.infer_batch` is that loop without the device move and the
all-reduce, with the same ``torch.autocast`` around the model and ``prepare_model_outputs``
(bf16 unless the engine's dtype is float32).

For the update (tests/adapters/test_verl_update.py), `CpuTrainEngine` runs verl's own loop:
``BaseEngine.train_batch``, ``FSDPEngine.forward_backward_batch`` and
``FSDPEngineWithLMHead.forward_step``, inside `verl_on_cpu`, which points the engine module's
``get_device_id`` / ``get_device_name`` at the CPU and starts a one-process gloo group; only the
optimizer step is replaced (it records the gradient). `DeviceEngine` runs verl's forward-only
loop the same way (``BaseEngine.infer_batch``), on a GPU with `one_process_group`
(benchmarks/bench_verl_gpu_memory.py). Every worker here is built with ``object.__new__``: no
``__init__``, no Ray, no FSDP wrapping, in the calling process.

Shared by tests/adapters/test_verl_*.py and the entry-point probe (verl_probe.py), which drives
the DelTA worker inside verl's TaskRunner Ray actor.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils import torch_functional as verl_F
from verl.utils.profiler import DistProfiler
from verl.workers.engine.base import BaseEngine
from verl.workers.engine.fsdp import transformer_impl
from verl.workers.engine.fsdp.transformer_impl import FSDPEngine, FSDPEngineWithLMHead
from verl.workers.engine.utils import postprocess_batch_func, prepare_micro_batches
from verl.workers.engine_workers import TrainingWorker


class CpuEngine:
    """verl's FSDP engine methods on a plain module. ``forwards`` counts model forwards."""

    prepare_model_inputs = FSDPEngineWithLMHead.prepare_model_inputs
    prepare_model_outputs = FSDPEngineWithLMHead.prepare_model_outputs
    _gather_and_unpad_packed = FSDPEngineWithLMHead._gather_and_unpad_packed
    _get_packed_pad_size = FSDPEngineWithLMHead._get_packed_pad_size

    def __init__(self, module: torch.nn.Module, autocast_dtype: torch.dtype = torch.float32) -> None:
        self.module = module
        self.use_ulysses_sp = False
        self.pad_to_length = None
        self._autocast_dtype = autocast_dtype
        self.engine_config = OmegaConf.create({"entropy_checkpointing": False, "entropy_from_logits_with_chunking": False})
        self.compute_entropy_from_logits = verl_F.entropy_from_logits  # as the engine's __init__, uncompiled
        self.forwards = 0
        module.register_forward_pre_hook(self._count)

    def _count(self, module, args) -> None:
        self.forwards += 1

    def infer_batch(self, data: TensorDict, loss_function=None) -> dict:
        """``FSDPEngine.forward_backward_batch(forward_only=True)`` without CUDA and all-reduce."""
        micro_batches, indices = prepare_micro_batches(data=data, dp_group=None, same_micro_num_in_dp=True)
        autocast = (
            nullcontext() if self._autocast_dtype == torch.float32 else torch.autocast("cpu", dtype=self._autocast_dtype)
        )
        outputs = []
        with torch.no_grad():
            for micro_batch in micro_batches:
                inputs, args = self.prepare_model_inputs(micro_batch=micro_batch)
                with autocast:
                    raw = self.module(**inputs, use_cache=False)
                    model_output = self.prepare_model_outputs(
                        output=raw, output_args=args, micro_batch=micro_batch, logits_processor_func=None
                    )
                outputs.append({"model_output": model_output, "loss": 1.0, "metrics": {}})
        return postprocess_batch_func(output_lst=outputs, indices=indices, data=data)

    def eval_mode(self, **kwargs):
        return nullcontext()

    def disable_adapter(self):
        return nullcontext()

    def is_mp_src_rank_with_outputs(self) -> bool:
        return True

    def get_data_parallel_group(self):
        return None


class CpuTrainEngine(CpuEngine):
    """`CpuEngine` plus verl's own training step: ``BaseEngine.train_batch`` (zero grad,
    ``forward_backward_batch``, optimizer step), ``FSDPEngine.forward_backward_batch`` (global
    token count all-reduced over the data-parallel group, micro-batches, ``loss.backward()`` per
    micro-batch) and ``FSDPEngineWithLMHead.forward_step`` (inputs, model, outputs, the loss
    function). Run them inside `verl_on_cpu` (their device lookups, a one-process gloo group).

    The optimizer is the stand-in: ``optimizer_step`` records every parameter's accumulated
    gradient in ``grads`` (one dict per step) and leaves the parameters as they are.
    """

    train_batch = BaseEngine.train_batch
    forward_backward_batch = FSDPEngine.forward_backward_batch
    forward_step = FSDPEngineWithLMHead.forward_step
    _gradient_sync_context = FSDPEngine._gradient_sync_context
    get_data_parallel_rank = FSDPEngine.get_data_parallel_rank
    get_data_parallel_size = FSDPEngine.get_data_parallel_size
    get_data_parallel_group = FSDPEngine.get_data_parallel_group

    def __init__(self, module: torch.nn.Module, autocast_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(module, autocast_dtype)
        self.ulysses_device_mesh = None
        self.ulysses_sequence_parallel_size = 1
        self.grads: list[dict[str, torch.Tensor]] = []

    @contextmanager
    def train_mode(self, **kwargs):
        self.module.train()
        try:
            yield
        finally:
            self.module.eval()

    def optimizer_zero_grad(self) -> None:
        self.module.zero_grad(set_to_none=True)

    def optimizer_step(self) -> float:
        grads = {name: p.grad.detach().clone() for name, p in self.module.named_parameters() if p.grad is not None}
        self.grads.append(grads)
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()])))

    def lr_scheduler_step(self) -> float:
        return 0.0


class DeviceEngine(CpuTrainEngine):
    """`CpuTrainEngine` whose forward-only pass is verl's too: ``BaseEngine.infer_batch`` ->
    ``FSDPEngine.forward_backward_batch(forward_only=True)`` -> ``FSDPEngineWithLMHead.forward_step``
    (micro-batch moved to ``get_device_id()``, ``torch.autocast`` on ``get_device_name()``). On a
    GPU with `one_process_group`, that is verl's whole engine loop minus the FSDP wrapping
    (benchmarks/bench_verl_gpu_memory.py); on CPU it runs inside `verl_on_cpu`."""

    infer_batch = BaseEngine.infer_batch


@contextmanager
def one_process_group(init_file: str, backend: str = "gloo"):
    """A one-process group if none is up (verl's engine loop all-reduces over the data-parallel group)."""
    own_group = not torch.distributed.is_initialized()
    if own_group:
        torch.distributed.init_process_group(backend, init_method=f"file://{init_file}", rank=0, world_size=1)
    try:
        yield
    finally:
        if own_group:
            torch.distributed.destroy_process_group()


@contextmanager
def verl_on_cpu(init_file: str):
    """verl's engine module with its device lookups pointed at the CPU (``get_device_id`` is
    ``torch.cuda.current_device()`` in verl 0.9.1) and, if none is up, a one-process gloo group
    (verl's training path all-reduces and all-gathers over the data-parallel group)."""
    saved = transformer_impl.get_device_id, transformer_impl.get_device_name
    transformer_impl.get_device_id = lambda: "cpu"
    transformer_impl.get_device_name = lambda: "cpu"
    try:
        with one_process_group(init_file):
            yield
    finally:
        transformer_impl.get_device_id, transformer_impl.get_device_name = saved


class CpuTrainingWorker:
    """The attributes ``TrainingWorker.infer_batch`` / ``train_mini_batch`` / ``train_batch``
    read, around a `CpuEngine` (or `CpuTrainEngine`)."""

    infer_batch = TrainingWorker.infer_batch
    train_mini_batch = TrainingWorker.train_mini_batch
    train_batch = TrainingWorker.train_batch

    def __init__(self, engine: CpuEngine, *, remove_padding: bool, micro_batch_size: int | None = None,
                 max_token_len: int | None = None, loss_fn=None) -> None:
        self.engine = engine
        self.model_config = OmegaConf.create({"use_remove_padding": remove_padding})
        self.engine_config = SimpleNamespace(
            use_dynamic_bsz=max_token_len is not None,
            infer_max_token_len_per_gpu=max_token_len,
            infer_micro_batch_size_per_gpu=micro_batch_size,
            max_token_len_per_gpu=max_token_len,
            micro_batch_size_per_gpu=micro_batch_size,
            use_fused_kernels=False,
            forward_only=False,
        )
        self.loss_fn = loss_fn  # ActorRolloutRefWorker.init_model: partial(ppo_loss, config=actor_config)
        self.device_name = "cpu"
        self.flops_counter = None
        self.profiler = DistProfiler(rank=0)  # verl's, disabled (train_mini_batch steps it)

    def _postprocess_output(self, output, **kwargs):
        final = TrainingWorker._postprocess_output(self, output, **kwargs)
        metrics = tu.get(final, "metrics")
        metrics.setdefault("mfu", 0.0)  # no flops counter without a GPU
        return final


def cpu_actor_worker(worker_cls, module: torch.nn.Module, **kwargs):
    """An instance of ``worker_cls`` (verl's actor worker class or a subclass) whose ``actor``
    is a `CpuTrainingWorker`; Ray, FSDP and the rollout engine are not built."""
    autocast_dtype = kwargs.pop("autocast_dtype", torch.float32)
    engine_cls = kwargs.pop("engine_cls", None) or (CpuTrainEngine if kwargs.get("loss_fn") is not None else CpuEngine)
    engine = engine_cls(module, autocast_dtype)
    worker = object.__new__(worker_cls)
    worker.actor = CpuTrainingWorker(engine, **kwargs)
    worker.profiler = None
    worker.enable_routing_replay = False  # set by ActorRolloutRefWorker.__init__ (MoE router replay)
    return worker


class LocalWorkerGroup:
    """One CPU worker behind the two calls ``RayPPOTrainer`` makes on its actor worker group.

    Records what the trainer sent, so a test can check the settings and advantages it received.
    """

    def __init__(self, worker) -> None:
        self.worker = worker
        self.sent: list[TensorDict] = []
        self.updates: list[TensorDict] = []
        # As verl's WorkerGroup._bind_worker_method: the remote methods are per-instance attributes.
        setattr(self, "compute_log_prob", self._compute_log_prob)
        setattr(self, "update_actor", self._update_actor)

    def _compute_log_prob(self, data: TensorDict) -> TensorDict:
        self.sent.append(data)
        return type(self.worker).compute_log_prob(self.worker, data.copy())

    def _update_actor(self, data: TensorDict) -> TensorDict:
        self.updates.append(data)
        if self.worker.actor.loss_fn is not None:  # the worker's own update (verl_on_cpu)
            return type(self.worker).update_actor(self.worker, data.copy())
        return tu.get_tensordict(tensor_dict={"loss": torch.zeros(1)}, non_tensor_dict={"metrics": {"mfu": 0.0, "pg_loss": 0.0}})


# --------------------------------------------------------------------------------------------
# A rollout batch as RayPPOTrainer.fit holds it before the old-log-prob pass.

#: Two responses templates per prompt kind; written answers, scored by the real arithmetic scorer.
RESPONSES = ["{gold}", "answer {wrong}", "x+1", "answer {gold}", "{gold} is it", "no"]


def rollout_proto(tokenizer, questions, golds, *, n=3, temperature=0.7, response_mask_holes=False):
    """``DataProto`` of ``len(questions) * n`` responses in verl's left/right-padded layout,
    with ``rm_scores`` from the project's arithmetic scorer and one ``uid`` per prompt.

    ``response_mask_holes`` zeroes one interior response token of every other response (what
    multi-turn tool tokens look like in verl's ``response_mask``).
    """
    import numpy as np
    from verl import DataProto

    from delta_rlvr.data import score_arithmetic

    prompts, responses, gold_of, uids = [], [], [], []
    for g, (question, gold) in enumerate(zip(questions, golds)):
        for j in range(n):
            template = RESPONSES[(g * n + j) % len(RESPONSES)]
            text = template.format(gold=gold, wrong=int(gold) + 1)
            prompts.append(tokenizer(question).input_ids)
            responses.append(tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id])
            gold_of.append(gold)
            uids.append(f"p{g}")
    p_len, r_len = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) for p in prompts])
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
    response_attention = torch.tensor([[1] * len(r) + [0] * (r_len - len(r)) for r in responses])
    response_mask = response_attention.clone()
    if response_mask_holes:
        for i in range(0, len(responses), 2):
            if len(responses[i]) > 2:
                response_mask[i, 1] = 0
    attention = torch.cat([prompt_mask, response_attention], 1)
    position = (attention.cumsum(1) - 1).clamp_min(0)
    texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
    rewards = torch.tensor(score_arithmetic(texts, gold_of), dtype=torch.float32)
    last = response_attention.sum(1) - 1
    rm_scores = torch.zeros(len(responses), r_len).scatter(1, last.unsqueeze(1), rewards.unsqueeze(1))
    return DataProto.from_dict(
        tensors=dict(prompts=prompt_ids, responses=response_ids, input_ids=torch.cat([prompt_ids, response_ids], 1),
                     attention_mask=attention, position_ids=position, response_mask=response_mask, rm_scores=rm_scores),
        non_tensors={"uid": np.array(uids, dtype=object)},
        meta_info={"temperature": temperature},
    )


def trainer_config(*, n=3, delta=None, **algorithm):
    """The parts of verl's config ``DeltaRayPPOTrainer`` reads, as OmegaConf."""
    algo = {"adv_estimator": "grpo", "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True, "use_kl_in_reward": False}
    algo.update(algorithm)
    return OmegaConf.create({
        "algorithm": algo,
        "actor_rollout_ref": {"rollout": {"n": n, "temperature": 0.7, "multi_turn": {"enable": False}},
                              "actor": {"calculate_sum_pi_squared": False, "policy_loss": {"loss_mode": "vanilla"},
                                        "ppo_mini_batch_size": 1, "ppo_epochs": 1, "data_loader_seed": 0,
                                        "shuffle": False, "calculate_entropy": False, "entropy_coeff": 0.0}},
        "trainer": {"default_local_dir": "checkpoints", "resume_mode": "auto"},
        "delta": {"enable": True, **(delta or {})},
    })


def cpu_trainer(config, worker_group):
    """A ``DeltaRayPPOTrainer`` over a `LocalWorkerGroup` (its Ray workers are not built)."""
    from delta_rlvr.adapters.verl.settings import delta_settings
    from delta_rlvr.adapters.verl.trainer import DeltaRayPPOTrainer
    from delta_rlvr.core.frozen import FrozenGamma

    trainer = object.__new__(DeltaRayPPOTrainer)
    trainer.config = config
    trainer.delta = delta_settings(config)
    trainer._delta_metrics = {}
    trainer._delta_gamma = FrozenGamma(trainer.delta.config.freeze_temperature)
    trainer.actor_rollout_wg = worker_group
    return trainer
