"""DelTA inside TRL: a ``GRPOTrainer`` subclass that hands A x coef to TRL's own loss.

Install with ``pip install 'delta-rlvr[trl]'`` (TRL >=1.16,<1.17; the private names used here
were read from trl 1.16.0, see docs/adapters.md).

Shapes: B responses of this process's generation batch, T completion tokens, H hidden size,
n tokens of one micro-batch (packed: valid tokens only, no padding).

Design choices (docs/adapters.md, "TRL"):
1. One hook: ``_generate_and_score_completions``. It calls TRL's, then replaces the (B,)
   ``advantages`` by the (B, T) tensor A x coef. TRL's ``_compute_loss`` accepts (B, T)
   advantages (it unsqueezes only 1-D ones), so no loss code is copied.
2. Coefficients are computed once per generation batch (the whole local batch that TRL then
   shuffles and splits into ``steps_per_generation`` optimiser steps), under no_grad, from the
   policy as it sampled (no optimiser step has happened yet: the old policy).
3. The proxy's inputs are the backbone's last hidden state (a forward hook on the backbone, the
   input of the LM head) and log p(y_t) from TRL's own fused LM head (the trainer's
   temperature and logit scaling, as TRL's loss sees them). No forward of DelTA's own where
   it can be avoided: where TRL runs an old-log-prob forward (vLLM importance-sampling
   correction, or gradient accumulation not aligned with generation), the hidden states are
   captured from it (``_get_per_token_logps_and_entropies``) with its ``old_per_token_logps``;
   in the aligned mode (TRL runs none) with TRL's transformers generation, they are captured
   from generation (``_generate_single_turn``: the hidden state that sampled each token, same
   weights) and log p(y) is recomputed from those rows by TRL's fused-head kernel (a head
   pass, no backbone). Otherwise (vLLM without IS, tools, a custom rollout, a capture past the
   cap) the adapter runs one no-grad forward per generation batch, after one warning that
   gives the numbers and what to change.
4. Packed, bounded memory: a capture holds each micro-batch's valid tokens' rows (n, H) in the
   model's dtype; the DelTA pass moves them, chunk by chunk, into a `PackedProxyCache` of the
   signed tokens (A != 0), freeing each captured chunk as it is packed: at most the capture
   plus one chunk, and a capture is taken only while that sum fits ``delta_cache_mib``. The
   adapter's own forward copies each micro-batch's rows out of its (mb, P + T, H) hidden state
   (then freed). Every DelTA pass runs from the cache. Past ``delta_cache_mib`` the pass
   streams: K + 1 more forwards, micro-batch by micro-batch (`DeltaStream`).
   ``delta_offload_cache`` keeps the cache in CPU memory.
5. The valid-token mask is the set of tokens TRL's loss can see: completion mask x tool mask x
   (importance-sampling ratio != 0, which removes the tokens vLLM IS ``*_mask`` modes drop).
   Masks the loss builds from the current policy at update time (``top_entropy_quantile``,
   ``off_policy_mask_threshold``) cannot be known when coefficients are computed: refused.
6. Pooling: "local" (default, as the paper's released code: each process's batch alone) or
   "global" (centroids, gammas and N/Z summed over processes with an all-reduce through
   ``DeltaStream``'s reduce hook); both stream.
7. The proxy (``delta_proxy``): row (the paper's, default), topk_hidden or lm_head, built by
   the same functions as the trainer's. The LM head is gathered when it is sharded (FSDP2
   DTensor: ``full_tensor``; DeepSpeed ZeRO-3: TRL's ``maybe_gather_lm_head_ctx``; FSDP1:
   ``summon_full_params`` of the root unit), and a head that is still not whole on some process
   is refused on every process alike. lm_head pools locally and does not stream.
8. The frozen gamma, DelTA's assignment temperature (``delta_freeze_temperature``; a
   `FrozenGamma`, as in the trainer), and the random-coefficient generator are per process
   (local pooling freezes each process's own gamma; each process seeds ``seed + rank``): every
   process writes its own ``delta_state_rank{r}.pt`` into each checkpoint and reads its own on
   resume. A different number of processes on resume is refused with local pooling (a rank's
   state has no owner) and handled with global pooling (the pooled gamma is the same on every
   rank).
9. Statistics go to TRL's ``_metrics["train"]`` as ``delta/*``, averaged over processes.
10. In evaluation (``model.training`` False) advantages are left as TRL computed them.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from trl import GRPOConfig, GRPOTrainer

from delta_rlvr.adapters.common import (
    DELTA_FIELDS,
    POOLING_CHOICES,
    all_reduce_sum,
    check_pooling,
    delta_config_from_prefixed,
    mean_over_ranks,
)
from delta_rlvr.core import DeltaConfig, DeltaStats, DeltaStream, delta_coefficients
from delta_rlvr.core.frozen import FrozenGamma
from delta_rlvr.core.packed import MIB, PackedProxyCache
from delta_rlvr.core.precision import full_precision
from delta_rlvr.core.proxies import LMHeadGradients, ProxyConfig, topk_hidden_proxy

#: The proxies the adapter offers (full_sketch needs a backward pass per token).
ADAPTER_PROXIES: tuple[str, ...] = ("row", "topk_hidden", "lm_head")

#: TRL loss types whose per-token loss is positively homogeneous in the advantage (trl 1.16):
#: the clip branch, SAPO's gate temperature, VESPO's gamma shape and the off-policy mask depend
#: on the sign of A only, and A x coef keeps the sign. So loss(A x coef) = coef x loss(A).
LINEAR_LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")

#: generation-batch keys that mean the forward needs more than input ids (vision inputs).
MULTIMODAL_KEYS: tuple[str, ...] = ("pixel_values", "image_grid_thw", "token_type_ids", "mm_token_type_ids")

#: the file in each checkpoint folder that older versions wrote (rank 0's state only)
STATE_FILE = "delta_state.pt"
#: the file of each process's own state (frozen gamma, RNG), written by that process
RANK_STATE_PATTERN = re.compile(r"delta_state_rank(\d+)\.pt")
#: the key of the frozen gamma in `STATE_FILE`, and the key older checkpoints used for it
GAMMA_STATE_KEY = "gamma"
OLD_GAMMA_STATE_KEY = "temperature"

PREFIX = "delta_"


def rank_state_file(rank: int) -> str:
    """The name of process ``rank``'s DelTA state file in a checkpoint folder."""
    return f"delta_state_rank{rank}.pt"

#: vocabulary columns per tile of TRL's fused-head kernel when log-probs are recomputed from
#: generation's rows (TRL's loss uses the same); on CPU a smaller vocabulary is one tile of its own width
HEAD_CHUNK = 32768
#: a micro-batch whose logits (n x V) hold at most this many values gets them from one product and
#: a log-softmax (TRL's transform, the same values to float32 rounding; tests/adapters/test_trl_scale.py)
#: instead of TRL's vocabulary-tiled kernel, whose per-tile bookkeeping dominates at that size
HEAD_DIRECT_ELEMENTS = 1 << 22

logger = logging.getLogger(__name__)


@dataclass
class DeltaGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus DelTA's settings, each a ``DeltaConfig`` field prefixed ``delta_``.

    TRL already has a field named ``delta`` (its two-sided clip bound); no field here is named
    that. Defaults reproduce the paper (K = 1, coefficients in [0.8, 1.2]).
    ``delta_coef_min = delta_coef_max = 1`` turns DelTA into a no-op (stock GRPO, exactly).
    """

    delta_refine_steps: int = field(default=1, metadata={"help": "DelTA K, centroid refinement iterations."})
    delta_coef_min: float = field(default=0.8, metadata={"help": "DelTA lambda_min."})
    delta_coef_max: float = field(default=1.2, metadata={"help": "DelTA lambda_max."})
    delta_assignment: str = field(default="soft", metadata={"help": "'soft' (sigmoid) or 'hard' (1[margin > 0])."})
    delta_contrast: str = field(default="two_sided", metadata={"help": "'two_sided' or 'within_side'."})
    delta_range_map: bool = field(default=True, metadata={"help": "False: coefficient = alpha* itself."})
    delta_self_normalise: bool = field(default=True, metadata={"help": "Rescale coefficients to mean 1."})
    delta_random_coefficients: bool = field(default=False, metadata={"help": "Random-lambda ablation."})
    delta_freeze_temperature: bool = field(
        default=False, metadata={"help": "Freeze gamma at the first batch's gamma^(0)."}
    )
    delta_pooling: str = field(
        default="local",
        metadata={"help": "'local': each process's batch (paper); 'global': all-reduced.", "choices": POOLING_CHOICES},
    )
    delta_proxy: str = field(
        default="row",
        metadata={"help": "token-gradient proxy: 'row' (the paper's), 'topk_hidden' or 'lm_head'.", "choices": ADAPTER_PROXIES},
    )
    delta_proxy_topk: int = field(default=64, metadata={"help": "K of the topk_hidden proxy."})
    delta_cache_mib: float | None = field(
        default=None,
        metadata={
            "help": "Cap (MiB per process) of the packed cache of signed tokens' hidden states; past it the "
            "DelTA pass streams with K + 1 more no-grad forwards. None: no cap."
        },
    )
    delta_offload_cache: bool = field(
        default=False, metadata={"help": "Keep the packed cache in CPU memory (chunks travel back one at a time)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.delta_config()  # validate now, with errors naming the delta_* setting
        check_pooling(self.delta_pooling, "DeltaGRPOConfig.delta_pooling")
        self.delta_proxy_config()
        cap = self.delta_cache_mib
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap >= 0):
            raise ValueError(
                f"DeltaGRPOConfig.delta_cache_mib must be a number of MiB >= 0 or None (no cap), got {cap!r}"
            )
        if not isinstance(self.delta_offload_cache, bool):
            raise ValueError(
                f"DeltaGRPOConfig.delta_offload_cache must be true or false, got {self.delta_offload_cache!r}"
            )

    def delta_proxy_config(self) -> ProxyConfig:
        """The core ``ProxyConfig`` of ``delta_proxy`` / ``delta_proxy_topk`` (validated)."""
        if self.delta_proxy not in ADAPTER_PROXIES:
            raise ValueError(
                f"DeltaGRPOConfig.delta_proxy={self.delta_proxy!r} is not available in TRL; use one of "
                f"{ADAPTER_PROXIES} (full_sketch needs a backward pass per token: use delta-rlvr audit-proxy)"
            )
        if self.delta_proxy == "lm_head" and self.delta_pooling == "global":
            raise ValueError(
                "DeltaGRPOConfig.delta_proxy='lm_head' pools each process's batch only; set delta_pooling='local' "
                "or use delta_proxy='row' / 'topk_hidden' with global pooling"
            )
        try:
            return ProxyConfig(name=self.delta_proxy, topk=self.delta_proxy_topk)
        except ValueError as err:
            raise ValueError(str(err).replace("ProxyConfig.topk", "DeltaGRPOConfig.delta_proxy_topk")) from None

    def delta_config(self) -> DeltaConfig:
        """The core ``DeltaConfig`` these ``delta_*`` fields describe."""
        values = {PREFIX + name: getattr(self, PREFIX + name) for name in DELTA_FIELDS}
        return delta_config_from_prefixed(values, PREFIX, "DeltaGRPOConfig.")


def check_supported(args: GRPOConfig) -> None:
    """Refuse configurations DelTA cannot be added to by rewriting advantages."""
    if args.use_liger_kernel:
        raise ValueError(
            "DeltaGRPOTrainer does not support use_liger_kernel=True: Liger patches the model's "
            "modules and forward, and DelTA needs the plain backbone hidden state and TRL's own "
            "log-probs. Set use_liger_kernel=False (Hub kernels through model_init_kwargs "
            "use_kernels=True are also untested with DelTA)."
        )
    if args.loss_type not in LINEAR_LOSS_TYPES:
        raise ValueError(
            f"DeltaGRPOTrainer does not support loss_type={args.loss_type!r}: DelTA is handed to TRL "
            "as per-token advantages A x coef, which equals weighting the per-token loss only for "
            f"losses positively homogeneous in the advantage. Set loss_type to one of {LINEAR_LOSS_TYPES} "
            "('dapo' is the paper's)."
        )
    quantile = getattr(args, "top_entropy_quantile", 1.0)
    if quantile < 1.0:
        raise ValueError(
            f"DeltaGRPOTrainer does not support top_entropy_quantile={quantile!r}: TRL picks those tokens in the "
            "loss from the entropies of the policy being updated, after DelTA's coefficients are fixed, so DelTA "
            "cannot normalise over the tokens the loss keeps. Set top_entropy_quantile=1.0 (DelTA reweights every "
            "token instead; for forking-token training use `delta-rlvr train --set algorithm.method=forking_tokens`)."
        )
    threshold = getattr(args, "off_policy_mask_threshold", None)
    if threshold is not None:
        raise ValueError(
            f"DeltaGRPOTrainer does not support off_policy_mask_threshold={threshold!r}: TRL drops those sequences "
            "in the loss from the KL of the policy being updated, after DelTA's coefficients are fixed, so DelTA "
            "cannot normalise over the tokens the loss keeps. Set off_policy_mask_threshold=None."
        )


def gathered_head(head: torch.nn.Module, dist: Any = None, wrapped: torch.nn.Module | None = None) -> tuple[Tensor, Tensor | None]:
    """(weight (V, H), bias (V,) or None) of the LM head as plain, whole tensors on every process.

    FSDP2 exposes the weight as a DTensor (``numel()`` is the full size, but a matmul with the
    plain hidden states fails): ``full_tensor()`` all-gathers it, as TRL's fused head does
    (``add_fused_lm_head`` in trl/trainer/utils.py). DeepSpeed ZeRO-3 shards it to numel 0:
    TRL's ``maybe_gather_lm_head_ctx`` gathers it and a copy is kept. FSDP1 (``dist.fsdp_version
    == 1``) keeps flat shards, empty on some ranks: ``summon_full_params`` of the root unit
    (``recurse=False``, as TRL's generation does) and a copy. Every process must call this at
    the same point (the gathers are collective).
    """
    from torch.distributed.tensor import DTensor
    from trl.trainer.utils import maybe_gather_lm_head_ctx

    weight, bias = head.weight, getattr(head, "bias", None)
    if isinstance(weight, DTensor):
        weight = weight.full_tensor()
        if isinstance(bias, DTensor):
            bias = bias.full_tensor()
        return weight.detach(), None if bias is None else bias.detach()
    if dist is not None and getattr(dist, "fsdp_version", None) == 1 and wrapped is not None:
        with dist.summon_full_params(wrapped, recurse=False, writeback=False):
            return head.weight.detach().clone(), None if head.bias is None else head.bias.detach().clone()
    if dist is not None and getattr(dist, "is_zero3", False):
        with maybe_gather_lm_head_ctx(weight, bias):
            return weight.detach().clone(), None if bias is None else bias.detach().clone()
    return weight.detach(), None if bias is None else bias.detach()


def direct_head_logps(hidden: Tensor, weight: Tensor, bias: Tensor | None, ids: Tensor, temperature: float,
                      softcap: float | None = None) -> Tensor:
    """(n,) float32 log p(ids) from rows hidden (n, H) and the head weight (V, H) (bias (V,)):
    what TRL's ``ChunkedLogProbFunction`` computes (the product in the autocast dtype, or the
    rows' dtype without autocast; soft-capping, then 1 / temperature, in float32), with the
    whole (n, V) logits at once."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    z = torch.mm(hidden.to(dtype), weight.to(dtype).t())
    if bias is not None:
        z = z + bias.to(dtype)
    z = z.float()
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z * (1 / temperature)
    return z.gather(1, ids.unsqueeze(1)).squeeze(1) - torch.logsumexp(z, 1)


class _Capture:
    """Hidden rows of the valid completion tokens of a forward TRL runs anyway, one chunk per
    micro-batch: TRL's old-log-prob forward (``source="scoring"``) or its transformers
    generation (``source="generation"``, aligned mode). Each chunk is (first response, last
    response + 1, rows (n, H) in the model's dtype, valid (b, T) bool: the tokens of ``rows``,
    row-major).

    The capture is the first form of the packed cache: it holds every valid token (the
    advantages, which say which tokens are signed, exist only after TRL has scored the rewards,
    after its forward), and the DelTA pass moves it into the `PackedProxyCache` chunk by chunk,
    freeing each captured chunk as it is packed. So the sum of the two never exceeds the
    capture's bytes plus one chunk, and the capture accepts a chunk only while that sum fits
    ``cap_bytes`` (``delta_cache_mib``). Each token is counted as the cache will hold it
    (row + 8 bytes of 1 - p and A).
    """

    def __init__(self, cap_bytes: int | None, source: str = "scoring") -> None:
        self.cap_bytes = cap_bytes
        self.source = source
        self.chunks: list[tuple[int, int, Tensor, Tensor]] = []
        self.nbytes = 0  # bytes held now
        self.peak_nbytes = 0
        self.needed_bytes = 0  # bytes every chunk offered would take (also past an overflow)
        self.largest = 0  # the largest chunk offered
        self.tokens = 0
        self.overflowed = False
        self.invalid: str | None = None  # why the capture cannot be used (not a cap overflow)
        self.done = False

    def add(self, start: int, stop: int, rows: Tensor, valid: Tensor) -> None:
        size = rows.shape[0] * (rows.shape[1] * rows.element_size() + 8)
        self.needed_bytes += size
        self.largest = max(self.largest, size)
        self.tokens += rows.shape[0]
        if self.overflowed or self.invalid is not None:
            return
        if self.cap_bytes is not None and self.nbytes + size + self.largest > self.cap_bytes:
            self.overflowed = True  # one chunk to spare for the packing: capture + cache <= cap
            self.chunks.clear()
            self.nbytes = 0
            return
        self.chunks.append((start, stop, rows, valid))
        self.nbytes += size
        self.peak_nbytes = max(self.peak_nbytes, self.nbytes)

    def discard(self, reason: str) -> None:
        self.invalid = reason
        self.chunks.clear()
        self.nbytes = 0

    def take(self) -> list[tuple[int, int, Tensor, Tensor]]:
        """Hand the chunks over (the capture keeps no reference to them)."""
        chunks, self.chunks, self.nbytes = self.chunks, [], 0
        return chunks


def single_process_cpu_launch(env: Any = None) -> bool:
    """Whether this looks like ``accelerate launch --cpu --num_processes N`` (N > 1) having started
    one process: accelerate's CPU launcher sets MASTER_ADDR / MASTER_PORT (only when more than one
    process is asked for) and ACCELERATE_USE_CPU, then runs the script once, leaving the other
    processes to mpirun (``--mpirun_hostfile``); no launcher set WORLD_SIZE or an MPI size."""
    env = os.environ if env is None else env
    launched_by_mpi_or_torchrun = any(k in env for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"))
    return (str(env.get("ACCELERATE_USE_CPU", "")).lower() == "true" and "MASTER_ADDR" in env
            and not launched_by_mpi_or_torchrun)


class DeltaGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages are per token: A x coef (DelTA, the DelTA paper's method).

    Use exactly like ``GRPOTrainer``, with a ``DeltaGRPOConfig`` as ``args``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if single_process_cpu_launch():
            logger.warning(
                "DeltaGRPOTrainer: this looks like `accelerate launch --cpu --num_processes N`, which starts ONE process "
                "on CPU (accelerate leaves the others to mpirun); training runs on 1 process. For N CPU processes use "
                "`torchrun --standalone --nproc_per_node N script.py` (or accelerate with --mpirun_hostfile)."
            )
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, DeltaGRPOConfig):
            raise TypeError(
                f"DeltaGRPOTrainer needs args=DeltaGRPOConfig(...), got {type(self.args).__name__}; "
                "DeltaGRPOConfig is GRPOConfig plus the delta_* fields"
            )
        check_supported(self.args)
        self.delta_config: DeltaConfig = self.args.delta_config()
        self.delta_proxy: ProxyConfig = self.args.delta_proxy_config()
        self._delta_gamma = FrozenGamma(self.delta_config.freeze_temperature)  # the frozen assignment temperature
        self._delta_generator: torch.Generator | None = None
        if self.delta_config.random_coefficients:
            seed = self.args.seed + self.accelerator.process_index
            self._delta_generator = torch.Generator(device="cpu").manual_seed(seed)
        cap = self.args.delta_cache_mib
        self._delta_cap_bytes: int | None = None if cap is None else int(cap * MIB)
        self._delta_capture: _Capture | None = None
        self._delta_warned: set[str] = set()  # reasons already warned about (one warning each per run)
        # (wrapped model, unwrapped model) and (config, text config): looked up once per object, not per call
        self._delta_unwrapped: tuple[Any, torch.nn.Module] | None = None
        self._delta_text: tuple[Any, Any] | None = None
        #: what the last DelTA pass did: "captured" (hidden states from TRL's own forward),
        #: "streamed", forwards run by the adapter, and the packed bytes held at the peak
        self.delta_pass_info: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------------
    # The overridden hook, and the capture from TRL's own old-log-prob forward.

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        training = self.model.training
        capture = None
        if training and self._trl_scores_old_policy():
            capture = _Capture(self._delta_cap_bytes, "scoring")
        elif training:
            why_not = self._generation_capture_blocker()
            capture = _Capture(self._delta_cap_bytes, "generation")
            if why_not is not None:
                capture.discard(why_not)
        self._delta_capture = capture
        try:
            output = super()._generate_and_score_completions(inputs)
            if not training:
                return output
            coef, stats = self._delta_coefficients(output)
        finally:
            self._delta_capture = None
        advantages = output["advantages"]  # (B,)
        output["advantages"] = advantages.unsqueeze(1) * coef  # (B, T): A x coef, 0 at invalid tokens
        self._log_delta_stats(stats)
        return output

    def _trl_scores_old_policy(self) -> bool:
        """Whether TRL's ``_generate_and_score_completions`` runs its own old-log-prob forward
        (the condition of trl 1.16.0, grpo_trainer.py, before ``old_per_token_logps``)."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return self.args.gradient_accumulation_steps % generate_every != 0 or bool(
            self.use_vllm and self.vllm_importance_sampling_correction
        )

    def _generation_capture_blocker(self) -> str | None:
        """Why the hidden states cannot be taken from generation in the aligned mode (TRL runs no
        old-log-prob forward), or None when they can: TRL's own transformers ``generate`` (one
        call per generation batch, no tools, no custom rollout), a text-only model, and a head
        without a logit scale (the log-probs are recomputed from the rows by TRL's fused-head
        kernel, which takes only the temperature and the soft-capping from here)."""
        if self.use_vllm:
            return "generation runs in vLLM, which returns no hidden states"
        if getattr(self, "use_transformers_continuous_batching", False):
            return "use_transformers_continuous_batching=True generates outside the model's forward"
        if getattr(self, "rollout_func", None) is not None:
            return "a rollout_func generates the completions"
        if getattr(self, "tools", None) or getattr(self, "environment_factories", None) is not None:
            return "tool calls add tokens that generation did not produce"
        if getattr(self, "_is_vlm", False):
            return "vision-language models are not supported by the generation capture"
        config = self._delta_text_config()
        for name in ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
            if getattr(config, name, None) is not None:
                return f"the model scales its logits ({name}={getattr(config, name)!r})"
        return None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        capture = self._delta_capture
        if capture is None or capture.source != "generation" or capture.invalid is not None:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        if capture.done:  # a second generation call (a tool loop): its tokens were not in the first
            capture.discard("generation ran more than once for the batch (tool calls)")
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        capture.done = True
        step = self.args.per_device_train_batch_size
        steps: list[list[Tensor]] = []  # per micro-batch: the (b, H) hidden of each decoding step
        held, row_bytes = [0], [0]

        def grab(module: torch.nn.Module, hook_args: Any, output: Any) -> None:
            hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            if hidden.shape[1] != 1:  # the prefill: only its last position samples a token
                hidden = hidden[:, -1:]
            if hidden.requires_grad:
                hidden = hidden.detach()
            if not steps:
                steps.extend([] for _ in range(0, hidden.shape[0], step))
            row_bytes[0] = hidden.shape[2] * hidden.element_size()
            held[0] += hidden.shape[0] * row_bytes[0]
            if capture.cap_bytes is not None and held[0] > capture.cap_bytes:
                capture.overflowed = True
            if capture.overflowed:
                steps.clear()
                steps.append([])  # keeps the list non-empty: nothing more is stored
                return
            for i, part in enumerate(hidden.split(step)):  # (b, 1, H): the state that samples each next token
                steps[i].append(part.clone())  # a copy per micro-batch: not the prefill's (B, P, H); freed once packed

        handle = self._delta_backbone().register_forward_hook(grab)
        try:
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, images, multimodal_fields,
                                                                     num_generations, has_tool_images)
        finally:
            handle.remove()
        lengths = [len(c) for c in completion_ids]
        n_steps = len(steps[0]) if steps else 0
        if capture.overflowed:
            capture.tokens = sum(lengths)  # what the capture would have held, for the warning
            capture.needed_bytes = capture.tokens * (row_bytes[0] + 8)
            capture.largest = max(sum(lengths[a:a + step]) for a in range(0, len(lengths), step)) * (row_bytes[0] + 8)
            return completion_ids, logprobs
        if n_steps == 0 or len(steps) != -(-len(lengths) // step) or max(lengths, default=0) > n_steps:
            capture.discard(f"generation made {n_steps} model calls for completions of up to {max(lengths, default=0)} tokens")
            return completion_ids, logprobs
        width = max(lengths, default=0)
        for i, a in enumerate(range(0, len(lengths), step)):
            chunk, steps[i] = steps[i], []  # this micro-batch's decoding steps are freed once packed
            lens = torch.tensor(lengths[a:a + step], device=chunk[0].device)
            valid = torch.arange(width, device=lens.device)[None] < lens[:, None]  # (b, T): generated tokens, EOS included
            rows = torch.cat(chunk[:width], dim=1)[valid]
            del chunk
            capture.add(a, a + len(lens), rows, valid)
        return completion_ids, logprobs

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        capture = self._delta_capture
        if capture is None or capture.source != "scoring" or capture.done or model is not self.model:
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        capture.done = True  # the first call on the policy is the old-log-prob pass (the ref pass comes after)
        completion_mask = attention_mask[:, -logits_to_keep:].bool()
        offset = [0]

        def grab(module: torch.nn.Module, hook_args: Any, output: Any) -> None:
            hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            start, stop = offset[0], offset[0] + hidden.shape[0]
            offset[0] = stop
            # Hidden state at position j produces the distribution of token j + 1.
            valid = completion_mask[start:stop]
            rows = hidden[:, -logits_to_keep - 1 : -1][valid]  # a copy: (n, H)
            capture.add(start, stop, rows.detach(), valid)

        handle = self._delta_backbone().register_forward_hook(grab)
        try:
            out = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        finally:
            handle.remove()
        if offset[0] != input_ids.shape[0]:  # not one backbone call per micro-batch: do not use it
            capture.discard(f"TRL's forward made backbone calls over {offset[0]} rows for {input_ids.shape[0]} responses")
        return out

    # ----------------------------------------------------------------------------------------
    # The DelTA pass.

    def _delta_loss_mask(self, batch: dict[str, Any]) -> Tensor:
        """(B, T) bool: the tokens TRL's loss can see."""
        mask = batch["completion_mask"].bool()
        if "tool_mask" in batch:
            mask = mask & batch["tool_mask"].bool()
        ratio = batch.get("importance_sampling_ratio")
        if ratio is not None:  # vLLM IS correction; *_mask modes set dropped tokens' ratio to 0
            mask = mask & (ratio != 0)
        return mask

    @torch.no_grad()
    def _delta_coefficients(self, batch: dict[str, Any]) -> tuple[Tensor, DeltaStats]:
        """coef (B, T) float32 for this process's generation batch, and its statistics."""
        present = [key for key in MULTIMODAL_KEYS if key in batch]
        if present:
            raise NotImplementedError(
                f"DeltaGRPOTrainer: the generation batch carries {present}: vision-language training "
                "is not supported by the DelTA adapter yet; train a text-only model"
            )
        mask = self._delta_loss_mask(batch)  # (B, T)
        advantages = batch["advantages"].float()  # (B,)
        head = None if self.delta_proxy.name == "row" else self._delta_full_head()
        chunks, captured = self._delta_micro_batches(batch)
        multi = self.accelerator.num_processes > 1
        reduce = all_reduce_sum if self.args.delta_pooling == "global" and multi else None
        gamma = self._delta_gamma.current()
        source = None if captured is None else self._delta_capture.source
        info: dict[str, Any] = {"captured": captured is not None, "capture_source": source, "streamed": False,
                                "forwards": 0, "micro_batches": len(chunks)}
        if captured is not None:
            info["capture_peak_bytes"] = self._delta_capture.peak_nbytes
        head_for_logps = None
        if source == "generation":  # log p(y) from the captured rows through TRL's fused-head kernel
            head_for_logps = head if head is not None else self._delta_full_head()

        def tokens(i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            """Micro-batch i's valid tokens: hidden (n, H), logp (n,), ids (n,), advantages (n,)."""
            start, stop = chunks[i]
            m = mask[start:stop]
            ids = batch["completion_ids"][start:stop][m]
            if captured is not None and captured[i] is not None:
                rows, valid = captured[i]
                captured[i] = None  # the only reference: freed once packed (pass 0)
                keep = m[valid.to(m.device)]  # the loss mask within the captured rows
                hidden = rows if bool(keep.all()) else rows[keep]
                del rows
                if source == "scoring":
                    logp = batch["old_per_token_logps"][start:stop][m].float()
                else:
                    logp = self._delta_head_logps(hidden, ids, head_for_logps)
            else:
                hidden, logp = self._delta_forward(batch, start, stop, m)
                info["forwards"] += 1
            adv = advantages[start:stop, None].expand_as(m)[m]
            return hidden, logp, ids, adv

        if self.delta_proxy.name == "lm_head":
            coef, stats = self._delta_lm_head(chunks, tokens, mask, head, gamma, info)
        else:
            coef, stats = self._delta_streamed(chunks, tokens, mask, advantages, head, reduce, gamma, info)
        self._delta_gamma.observe(stats.gamma[0])  # kept once, with freeze_temperature: gamma^(0) of the first batch
        self.delta_pass_info = info
        return coef, stats

    def _delta_micro_batches(self, batch: dict[str, Any]) -> tuple[list[tuple[int, int]], list | None]:
        """The micro-batches (response ranges) of the pass, and for each the (rows, valid) captured
        from a forward TRL ran anyway (None: the adapter forwards them itself, after one warning
        with the numbers). Every process decides alike."""
        capture = self._delta_capture
        n, step = batch["completion_ids"].shape[0], self.args.per_device_train_batch_size
        usable = capture is not None and capture.done and not capture.overflowed and capture.invalid is None
        if usable and capture.source == "scoring":
            usable = "old_per_token_logps" in batch
        if usable:  # the captured chunks must tile the batch, in its order and token layout
            width = batch["completion_ids"].shape[1]
            ranges = [(a, b) for a, b, _, _ in capture.chunks]
            usable = (ranges == [(a, min(a + step, n)) for a in range(0, n, step)] or
                      (capture.source == "scoring" and ranges and ranges[0][0] == 0 and ranges[-1][1] == n and
                       all(x[1] == y[0] for x, y in zip(ranges, ranges[1:]))))
            usable = usable and all(valid.shape == (b - a, width) for a, b, _, valid in capture.chunks)
            if not usable:
                capture.discard("the captured rows do not match the batch TRL returned")
        if self.accelerator.num_processes > 1:  # all or none: forwards can be collective (FSDP, ZeRO-3)
            flag = torch.tensor([0.0 if usable else 1.0], device=self.accelerator.device)
            usable = float(self.accelerator.reduce(flag, "sum")) == 0.0
        if usable:
            taken = capture.take()
            return [(a, b) for a, b, _, _ in taken], [(rows, valid) for _, _, rows, valid in taken]
        if capture is not None:
            capture.take()
            self._delta_warn_forward(capture, batch)
        return [(a, min(a + step, n)) for a in range(0, n, step)], None

    def _delta_warn_forward(self, capture: _Capture, batch: dict[str, Any]) -> None:
        """One warning per run and reason: DelTA runs its own forward (``delta/forwards`` > 0)."""
        if capture.overflowed:
            setting = getattr(self.args, "delta_cache_mib", None)  # as the user wrote it
            cap = setting if setting is not None else f"{capture.cap_bytes / MIB:.4g}"
            need = (capture.needed_bytes + capture.largest) / MIB
            key = "cap"
            message = (
                f"DeltaGRPOTrainer: the hidden states of the {capture.tokens} valid completion tokens of this process's "
                f"batch ({capture.needed_bytes / MIB:.4g} MiB, plus {capture.largest / MIB:.4g} MiB for one micro-batch "
                f"while packing) do not fit delta_cache_mib={cap} MiB, so DelTA cannot reuse TRL's "
                f"{'forward' if capture.source == 'scoring' else 'generation'} and runs its own no-grad forward over the "
                "batch (and streams, K + 1 more forwards, if the packed cache passes the cap too). Raise "
                f"delta_cache_mib to at least {need:.4g} MiB to run no extra forward (delta/forwards shows the forwards "
                "DelTA ran)."
            )
        else:
            reason = capture.invalid or "TRL ran no forward DelTA could reuse"
            key = reason
            tokens = int(batch["completion_mask"].sum())
            message = (
                f"DeltaGRPOTrainer: {reason}, so DelTA runs one no-grad forward over this process's {tokens} completion "
                "tokens per generation batch (delta/forwards = 1). To run none, generate with transformers (no vLLM) "
                "or keep TRL's own old-log-prob forward (vllm_importance_sampling_correction=True)."
            )
        if key not in self._delta_warned:
            self._delta_warned.add(key)
            logger.warning(message)

    def _delta_head_logps(self, hidden: Tensor, ids: Tensor, head: tuple[Tensor, Tensor | None]) -> Tensor:
        """(n,) float32 log p(y) of captured rows (n, H) through TRL's fused-head kernel (or, for
        at most HEAD_DIRECT_ELEMENTS logits, `direct_head_logps`), with the trainer's temperature
        and soft-capping, under the autocast TRL's forward runs in."""
        from trl.kernels import ChunkedLogProbFunction

        weight, bias = head
        softcap = getattr(self._delta_text_config(), "final_logit_softcapping", None)
        autocast = self.accelerator.autocast()
        if self.args.cast_lm_head_to_fp32:
            hidden, autocast = hidden.float(), torch.autocast(hidden.device.type, enabled=False)
        if hidden.shape[0] * weight.shape[0] <= HEAD_DIRECT_ELEMENTS:
            with autocast:
                out = direct_head_logps(hidden.to(weight.device), weight, bias, ids.to(weight.device),
                                        self.temperature, softcap)
            return out.to(hidden.device)
        # On CPU a vocabulary within one tile is one tile either way (the same columns, the same
        # products; checked bit-identical): a tile as wide as the vocabulary spares the kernel a fresh
        # (n, HEAD_CHUNK) buffer per call, whose pages the CPU allocator faults in each time. On GPUs
        # (a caching allocator) the tiling stays TRL's own.
        chunk = min(HEAD_CHUNK, weight.shape[0]) if weight.device.type == "cpu" else HEAD_CHUNK
        with autocast:
            out = ChunkedLogProbFunction.apply(hidden.to(weight.device), weight, bias, ids.to(weight.device),
                                               self.temperature, chunk, softcap, 1.0, ("log_probs",))
        return out[0].float().to(hidden.device)

    def _delta_signed_vectors(self, hidden: Tensor, logp: Tensor, ids: Tensor, adv: Tensor, head) -> Tensor:
        """(n_signed, H) float32 proxy of the signed tokens of one micro-batch."""
        signed = adv != 0
        if self.delta_proxy.name == "row":
            return hidden[signed].float() * (-torch.expm1(logp[signed].float())).unsqueeze(1)  # as PackedProxyCache
        weight, bias = head
        with full_precision():
            v = topk_hidden_proxy(hidden[signed][None], ids[signed][None], weight, k=self.delta_proxy.topk,
                                  temperature=self.temperature, head_bias=bias)
        return v[0]

    def _delta_streamed(self, chunks, tokens, mask, advantages, head, reduce, gamma, info):
        """row / topk_hidden: packed cache, or streaming past the cap (both exact)."""
        cache = PackedProxyCache(None if self._delta_cap_bytes is None else self._delta_cap_bytes / MIB,
                                 offload=self.args.delta_offload_cache)
        stream = DeltaStream(self.delta_config, reduce=reduce, gamma=gamma, generator=self._delta_generator)
        streaming = False

        def feed(hidden, logp, ids, adv) -> None:
            v = self._delta_signed_vectors(hidden, logp, ids, adv, head)
            signed = adv != 0
            stream.update_tokens(v, adv[signed], zero_advantage_tokens=int((~signed).sum()))

        for i in range(len(chunks)):  # pass 0: the old-log-prob pass (TRL's or the adapter's)
            hidden, logp, ids, adv = tokens(i)
            if not streaming:
                if self.delta_proxy.name == "row":
                    kept = cache.add(hidden, logp, adv)
                else:
                    signed = adv != 0
                    kept = cache.add_vectors(self._delta_signed_vectors(hidden, logp, ids, adv, head), adv[signed],
                                             zero_advantage_tokens=int((~signed).sum()))
                if not kept:
                    streaming = True
                    cache.spill(stream)  # what was cached goes first, in its order
            if streaming:
                feed(hidden, logp, ids, adv)
            del hidden, logp, ids, adv  # nothing of this micro-batch outlives its turn but the cached rows
        info["cache_peak_bytes"] = cache.peak_nbytes
        if self.accelerator.num_processes > 1:  # all or none: the streamed passes forward (collective under FSDP)
            flag = torch.tensor([1.0 if streaming else 0.0], device=self.accelerator.device)
            any_streaming = float(self.accelerator.reduce(flag, "sum")) > 0
            if any_streaming and not streaming:
                cache.spill(stream)
            streaming = any_streaming
        if not streaming:
            result = cache.run(stream)
        else:
            info["streamed"] = True
            stream.end_pass()
            while not stream.done:
                for i in range(len(chunks)):
                    feed(*tokens(i))
                stream.end_pass()
            result = stream.result()
        signed_coef = PackedProxyCache.coefficients(result).to(mask.device)
        signed = mask & (advantages != 0).unsqueeze(1)  # row-major = feeding order (chunks are response ranges)
        coef = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        coef[signed] = signed_coef
        coef[mask & ~signed] = result.zero_advantage_coef.to(mask.device)
        return coef, result.stats

    def _delta_lm_head(self, chunks, tokens, mask, head, gamma, info):
        """lm_head: the packed valid tokens' hidden states (model dtype), one shot, local pooling.
        The vectors are V x H per token, so this proxy cannot stream: the cap is a hard limit."""
        parts, total = [], 0
        for i in range(len(chunks)):
            hidden, _, ids, adv = tokens(i)
            total += hidden.numel() * hidden.element_size()
            if self._delta_cap_bytes is not None and total > self._delta_cap_bytes:
                raise ValueError(
                    f"DeltaGRPOTrainer: delta_proxy='lm_head' needs every valid token's hidden state at once "
                    f"(more than delta_cache_mib={self.args.delta_cache_mib} MiB here) and cannot stream; raise "
                    "delta_cache_mib, or use delta_proxy='row' or 'topk_hidden', which stream past the cap"
                )
            parts.append((hidden, ids, adv))
        info["cache_peak_bytes"] = total
        hidden = torch.cat([p[0] for p in parts]).unsqueeze(1)  # (n, 1, H): one "response" per token
        ids = torch.cat([p[1] for p in parts]).unsqueeze(1)
        adv = torch.cat([p[2] for p in parts])
        del parts
        ones = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
        weight, bias = head
        vectors = LMHeadGradients(hidden, ids, weight, ones, temperature=self.temperature, head_bias=bias)
        out = delta_coefficients(vectors, adv, ones, self.delta_config, gamma=gamma,
                                 generator=self._delta_generator)
        coef = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        coef[mask] = out.coef.reshape(-1).to(mask.device)
        return coef, out.stats

    def _delta_forward(self, batch: dict[str, Any], start: int, stop: int, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One no-grad forward of responses [start, stop) through TRL's fused head: the hidden
        rows (n, H) (a copy, in the model's dtype) and log-probs (n,) float32 of the tokens in
        ``mask`` (b, T). The micro-batch's (b, P + T, H) hidden state is freed on return."""
        from trl.models.utils import disable_gradient_checkpointing

        ids = torch.cat([batch["prompt_ids"][start:stop], batch["completion_ids"][start:stop]], dim=1)
        att = torch.cat([batch["prompt_mask"][start:stop], batch["completion_mask"][start:stop]], dim=1)
        keep = batch["completion_ids"].size(1)
        captured: list[Tensor] = []

        def grab(module: torch.nn.Module, args: Any, output: Any) -> None:
            hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            captured.append(hidden[:, -keep - 1 : -1][mask].detach())  # hidden at j scores token j + 1

        labels = ids.masked_fill(att == 0, -100)
        labels[:, :-keep] = -100
        handle = self._delta_backbone().register_forward_hook(grab)
        try:
            with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
                with self.accelerator.autocast():
                    out = self.model(input_ids=ids, attention_mask=att, labels=labels, fused_lm_head=True)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(
                f"DeltaGRPOTrainer: expected one backbone call per forward, saw {len(captured)}; "
                "the model's forward is not TRL's fused-head forward (a Liger or custom "
                "forward?). Use a plain transformers causal LM."
            )
        return captured[0], out.log_probs[:, -keep:][mask].float()

    def _delta_model(self) -> torch.nn.Module:
        """``accelerator.unwrap_model(self.model)``, looked up again only when ``self.model`` is
        another object (the trainer wraps it once; unwrapping walks the wrappers on every call)."""
        wrapped = self.model
        cached = getattr(self, "_delta_unwrapped", None)
        if cached is None or cached[0] is not wrapped:
            cached = self._delta_unwrapped = (wrapped, self.accelerator.unwrap_model(wrapped))
        return cached[1]

    def _delta_text_config(self) -> Any:
        """The unwrapped model's text config (``config.get_text_config()``), looked up again only
        when the model's config is another object. Its values are read where they are used."""
        config = self._delta_model().config
        cached = getattr(self, "_delta_text", None)
        if cached is None or cached[0] is not config:
            cached = self._delta_text = (config, config.get_text_config())
        return cached[1]

    def _delta_backbone(self) -> torch.nn.Module:
        """The decoder stack TRL's fused forward calls (``base_model`` of the causal LM)."""
        model = self._delta_model()
        if hasattr(model, "get_base_model"):  # PEFT wrapper
            model = model.get_base_model()
        backbone = getattr(model, "base_model", None)
        if backbone is None or backbone is model:
            raise ValueError(
                f"DeltaGRPOTrainer: {type(model).__name__} exposes no backbone (base_model); pass a "
                "transformers *ForCausalLM model"
            )
        return backbone

    def _delta_full_head(self) -> tuple[Tensor, Tensor | None]:
        """The whole LM head (weight, bias) on every process, for topk_hidden and lm_head;
        refused on every process alike when some process cannot get it whole."""
        model = self._delta_model()
        head = model.get_output_embeddings()
        weight, bias = (None, None) if head is None else gathered_head(head, self._dist, self.model_wrapped)
        hidden_size = self._delta_text_config().hidden_size
        bad = weight is None or weight.dim() != 2 or weight.shape[1] != hidden_size or weight.numel() == 0
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([1.0 if bad else 0.0], device=self.accelerator.device)
            bad = float(self.accelerator.reduce(flag, "sum")) > 0
        if bad:
            raise ValueError(
                f"DeltaGRPOTrainer: delta_proxy={self.delta_proxy.name!r} needs the whole LM-head matrix on each "
                "process, but on at least one process it is missing or still sharded after gathering (FSDP1 with the "
                "head in a nested unit?); use delta_proxy='row', which needs no head"
            )
        return weight, bias

    # ----------------------------------------------------------------------------------------
    # Checkpoints: the frozen gamma and the random-coefficient generator survive a resume.

    def _delta_state(self) -> dict[str, Any]:
        """This process's DelTA state: its frozen gamma ((2,) float64 or None) and its
        random-coefficient generator state (None without delta_random_coefficients)."""
        generator = None if self._delta_generator is None else self._delta_generator.get_state()
        return {GAMMA_STATE_KEY: self._delta_gamma.value, "generator": generator,
                "rank": self.accelerator.process_index, "world_size": self.accelerator.num_processes,
                "pooling": self.args.delta_pooling}

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        # every process writes its own state (local pooling: its own gamma; every rank: its own generator)
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        os.makedirs(folder, exist_ok=True)
        torch.save(self._delta_state(), os.path.join(folder, rank_state_file(self.accelerator.process_index)))

    def _load_optimizer_and_scheduler(self, checkpoint):
        device = self.args.device
        if checkpoint is not None and self.args.world_size > 1 and device.type == "cpu" and device.index is not None:
            # transformers 5 loads the optimizer with map_location=args.device, "cpu:0" on several CPU
            # processes, which torch.load cannot restore to: load it to "cpu" (the same memory) instead.
            self.args.__dict__["_setup_devices"] = torch.device("cpu")
            try:
                super()._load_optimizer_and_scheduler(checkpoint)
            finally:
                self.args.__dict__["_setup_devices"] = device
        else:
            super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        state = self._delta_read_state(checkpoint)
        if state is None:
            return
        # checkpoints written before the rename keep the frozen gamma under "temperature"
        self._delta_gamma.load(state[GAMMA_STATE_KEY] if GAMMA_STATE_KEY in state else state.get(OLD_GAMMA_STATE_KEY))
        if self._delta_generator is not None:
            if state.get("generator") is not None:
                self._delta_generator.set_state(state["generator"])
            elif state.get("fresh_generator_seed") is not None:
                self._delta_generator.manual_seed(state["fresh_generator_seed"])

    def _delta_read_state(self, checkpoint: str) -> dict[str, Any] | None:
        """This process's state from ``checkpoint``: its own ``delta_state_rank{r}.pt``; a
        world-size change is handled with global pooling (the gamma is the pooled one, equal on
        every rank) and refused with local pooling where a rank's state is its own. Checkpoints
        of older versions (one ``delta_state.pt``, written by rank 0) load on one process."""
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        own = os.path.join(checkpoint, rank_state_file(rank))
        legacy = os.path.join(checkpoint, STATE_FILE)
        saved = sorted(int(m.group(1)) for m in (RANK_STATE_PATTERN.fullmatch(f) for f in os.listdir(checkpoint)) if m)
        if not saved:
            if os.path.exists(legacy):
                state = torch.load(legacy, weights_only=True)
                if world > 1 and (state.get("generator") is not None or (
                        self.args.delta_pooling == "local" and state.get(GAMMA_STATE_KEY, state.get(OLD_GAMMA_STATE_KEY)) is not None)):
                    raise ValueError(
                        f"DeltaGRPOTrainer: {legacy} was written by an older version from process 0 only, and this run "
                        f"has {world} processes, each with its own DelTA state (frozen gamma with delta_pooling='local', "
                        "random-coefficient generator); resume on one process, or start a new run"
                    )
                return state
            if self.delta_config.freeze_temperature:
                raise FileNotFoundError(
                    f"DeltaGRPOTrainer: {own} is missing, so the frozen DelTA gamma (assignment temperature, "
                    "delta_freeze_temperature=True) of this run cannot be restored; resume from a checkpoint "
                    "written by DeltaGRPOTrainer, or start a new run"
                )
            return None
        saved_world = len(saved)
        first = torch.load(os.path.join(checkpoint, rank_state_file(saved[0])), weights_only=True)
        saved_world = int(first.get("world_size", saved_world))
        if saved_world == world and os.path.exists(own):
            return torch.load(own, weights_only=True)
        rank_specific = first.get("generator") is not None or (
            first.get("pooling", "local") == "local" and first.get(GAMMA_STATE_KEY) is not None)
        pooling = first.get("pooling", "local")
        if not rank_specific:
            return first  # nothing of it depends on the rank (no frozen gamma, no generator)
        if pooling == "local" or self.args.delta_pooling == "local":
            raise ValueError(
                f"DeltaGRPOTrainer: {checkpoint} holds the DelTA state of {saved_world} processes and this run has "
                f"{world}: with delta_pooling='local' each process froze its own gamma from its own batch, and "
                "no process of the new run has a batch of its own to take it from. Resume with "
                f"{saved_world} processes, or start a new run (delta_pooling='global' pools gamma over every process "
                "and can change the number of processes on resume)"
            )
        # global pooling: the frozen gamma is the pooled one, the same on every rank; generators are per rank
        state = dict(first)
        if state.get("generator") is not None:
            path = os.path.join(checkpoint, rank_state_file(rank))
            if os.path.exists(path):
                state["generator"] = torch.load(path, weights_only=True).get("generator")
            else:  # a new rank: a stream of its own, away from every saved rank's seed
                state["generator"] = None
                state["fresh_generator_seed"] = self.args.seed + rank + 1_000_003 * (self.state.global_step + 1)
        logger.warning(
            "DeltaGRPOTrainer: resuming %d processes from a checkpoint of %d (delta_pooling='global'): every process "
            "takes the pooled frozen gamma; the data order and random coefficients differ from the original run's",
            world, saved_world)
        return state

    def _log_delta_stats(self, stats: DeltaStats) -> None:
        """delta/* statistics into TRL's metrics, averaged over processes (NaN-aware)."""
        metrics = stats.as_metrics("delta/")
        info = self.delta_pass_info
        metrics["delta/streamed"] = float(info.get("streamed", False))
        metrics["delta/forwards"] = info.get("forwards", 0) / max(info.get("micro_batches", 1), 1)
        metrics["delta/cache_mib"] = info.get("cache_peak_bytes", 0) / MIB
        if self.accelerator.num_processes > 1:
            device = self.accelerator.device
            metrics = mean_over_ranks(metrics, lambda t: self.accelerator.reduce(t.to(device), "sum").cpu())
        for name, value in sorted(metrics.items()):
            self._metrics["train"][name].append(value)
