"""DelTA's coefficient pass inside verl's engine forward (verl 0.9.1, FSDP engine).

Shapes: b responses in a micro-batch, n tokens of its packed (no-padding) sequences, H hidden
size; s of them are signed response tokens (valid, A != 0).

How it plugs in, without copying engine code (verl/workers/engine/fsdp/transformer_impl.py):
- A forward pre-hook on the LM head records its input h (the final-normed hidden state).
  With remove-padding it is the packed (1, n / sp + pad, H) sequence: the engine's own
  ``_gather_and_unpad_packed`` gathers it over the Ulysses sequence-parallel group and strips
  the pad, exactly as ``prepare_model_outputs`` does for the log-probs. Without remove-padding
  it is (b, L, H), narrowed to each sequence's length.
- ``FSDPEngineWithLMHead.prepare_model_outputs`` is wrapped on the instance. After it has made
  the log-probs (at the rollout temperature, which the engine applies), the wrapper picks the
  response tokens of the packed rows (the positions verl's ``no_padding_2_padding`` slices) and
  copies the signed ones' h, 1 - p and A into a `PackedProxyCache`: s x H values in the
  model's dtype. Nothing padded to ``response_length`` is ever built, and no float32 copy of the
  proxy exists while the micro-batch's logits are alive.
- After verl's old-log-prob pass has returned (its logits long freed), every pass of the
  estimator runs from the cache, with autocast off (`delta_rlvr.core.precision`): zero extra
  model forwards. The cache fills its tiers in order (`PassOptions.tiers`: GPU, pinned host
  memory, a memory-mapped file on local disk, read back in every pass). Only if every tier is
  full is it spilled into the estimator's first pass and the K + 1 remaining passes re-run the
  engine's forward instead.
- One cache per Ulysses sequence-parallel group: every SP rank gathers the same packed rows,
  but only the group's output rank (``is_mp_src_rank_with_outputs``, SP rank 0; the others
  return nothing from verl's pass) keeps them and runs the estimator. The others only count
  what the cache would hold, so they take the same path, and join the same number of forwards
  when it streams.
- Every forward writes, per token position, a code for that token's coefficient as a model
  output (the index of the signed token in feeding order, -2 for a zero-advantage token, -1
  elsewhere), so verl's own micro-batch reassembly (dynamic batch sizes included) puts the
  coefficients back in sample order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict
from torch import Tensor
from verl.utils import tensordict_utils as tu

from delta_rlvr.core import DeltaConfig, DeltaStats, DeltaStream
from delta_rlvr.core.packed import CacheTier, PackedProxyCache
from delta_rlvr.core.precision import full_precision

#: name of the (B,) per-response advantage the driver sends with the old-log-prob call
ADVANTAGE_KEY = "delta_advantages"
#: non-tensor key carrying DeltaSettings.as_dict() to the workers
SETTINGS_KEY = "delta_settings"
#: non-tensor key carrying the frozen (gamma+, gamma-), DelTA's assignment temperature, with
#: delta.freeze_temperature: {"pos": float, "neg": float}
GAMMA_KEY = "delta_gamma"
#: per-position model output this module adds (popped before the worker returns)
INDEX_KEY = "delta_index"
COEF_KEY = "delta_coef"
#: codes of `INDEX_KEY` other than a signed token's index
NOT_A_RESPONSE_TOKEN = -1
ZERO_ADVANTAGE_TOKEN = -2


def check_engine_supported(engine: Any, data: TensorDict, *, use_fused_kernels: bool = False) -> None:
    """Refuse engine settings under which the LM head's input cannot be captured.

    ``use_fused_kernels`` is the engine config's value: ``TrainingWorker.infer_batch`` adds it
    to the data only later, so the data alone does not say whether the fused kernel will run.
    """
    if tu.get_non_tensor_data(data=data, key="use_fused_kernels", default=use_fused_kernels):
        raise ValueError(
            "DelTA (delta.enable=true) does not support actor_rollout_ref.model.use_fused_kernels=True: "
            "the fused kernel reads lm_head.weight directly, so the LM head's input is never seen. "
            "Set actor_rollout_ref.model.use_fused_kernels=False."
        )
    if not hasattr(engine, "prepare_model_outputs") or not hasattr(engine, "_gather_and_unpad_packed"):
        raise ValueError(
            f"DelTA (delta.enable=true) supports verl's FSDP engine only, got {type(engine).__name__}; "
            "set actor_rollout_ref.actor.strategy=fsdp2 (or fsdp)"
        )


def _lm_head(module: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(module, "_fsdp_wrapped_module", module)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if head is None:
        raise ValueError(f"DelTA: {type(inner).__name__} has no output embeddings (LM head) to hook")
    return head


def response_positions(micro_batch: TensorDict) -> tuple[Tensor, Tensor, Tensor]:
    """Rows of the packed (n, ...) outputs that predict response tokens, and each one's sample.

    The output at packed row j predicts token j + 1, so response token t of sample i (whose
    packed sequence ends at offset e_i, with r_i response tokens) is predicted by row
    e_i - r_i - 1 + t: the slice ``no_padding_2_padding`` takes.

    Returns:
        rows, sample and token (m,) int64 each, m = sum of response lengths, in sample order:
        the packed row, the sample and the index of the token within its response.
    """
    offsets = micro_batch["input_ids"].offsets()
    response_lens = micro_batch["attention_mask"][:, micro_batch["prompts"].shape[1] :].sum(dim=1).to(offsets.device)
    ends = offsets[1:]
    sample = torch.repeat_interleave(torch.arange(len(response_lens), device=offsets.device), response_lens)
    starts = ends - response_lens - 1  # row predicting each sample's first response token
    first = torch.cumsum(response_lens, 0) - response_lens  # index of that token among the m
    t = torch.arange(int(response_lens.sum()), device=offsets.device) - first[sample]
    return starts[sample] + t, sample, t


@dataclass
class PassOptions:
    """How the pass keeps the proxy: ``tiers`` of the packed cache, filled in order (default: the
    GPU, no cap; a single tier capped at 0 always streams); ``holds_cache``: False on the
    sequence-parallel ranks that return no output (they only count, see the module docstring).

    With a disk tier the estimator's pass 0 (first moments and the (2, H, H) float64 second
    moments, 56 H^2 bytes measured) also runs inside the old-log-prob forward, so the cache is
    read back K + 1 times instead of K + 3 (`PackedProxyCache.run` measures gamma^(0) in a pass
    of its own when nothing was fed yet)."""

    tiers: tuple[CacheTier, ...] = (CacheTier("device"),)
    holds_cache: bool = True

    @property
    def moments_in_forward(self) -> bool:
        return self.holds_cache and any(t.kind == "disk" for t in self.tiers)


class ProxyFeeder:
    """Feeds each micro-batch's signed response tokens to the cache (first forward) or to the
    stream (re-forwards after a spill), and emits the per-position coefficient codes."""

    def __init__(self, stream: DeltaStream, cache: PackedProxyCache, *, moments_in_forward: bool = False) -> None:
        self.stream = stream
        self.cache = cache
        self.moments_in_forward = moments_in_forward  # the stream's pass 0 runs in the first forward too
        self.streaming = False  # True once the cache has spilled: each pass re-runs the forward
        self.first_forward = True
        self.offset = 0  # signed tokens seen so far in this forward (feeding order)

    def start_forward(self) -> None:
        self.offset = 0

    def feed(self, rows: Tensor, log_probs: Tensor, micro_batch: TensorDict) -> Tensor:
        """rows (n, H) head inputs and log_probs (nested, n values) of one micro-batch; returns
        the nested per-position codes."""
        position, sample, token = response_positions(micro_batch)
        valid = micro_batch["response_mask"].bool().to(position.device)[sample, token]  # verl's loss mask
        advantages = micro_batch[ADVANTAGE_KEY].float().to(rows.device)[sample.to(rows.device)]
        position, advantages = position[valid], advantages[valid.to(advantages.device)]
        hidden = rows.index_select(0, position.to(rows.device))  # (m_valid, H), a copy
        logp = log_probs.values().index_select(0, position.to(log_probs.device)).float()
        signed = advantages != 0
        codes = torch.full((int(micro_batch["input_ids"].offsets()[-1]),), NOT_A_RESPONSE_TOKEN, dtype=torch.int64,
                           device=position.device)
        n_signed = int(signed.sum())
        codes[position[~signed.to(position.device)]] = ZERO_ADVANTAGE_TOKEN
        codes[position[signed.to(position.device)]] = self.offset + torch.arange(n_signed, device=position.device)
        self.offset += n_signed
        if self.first_forward and not self.streaming:
            stored = self.cache.add(hidden, logp, advantages)
            if stored and not self.moments_in_forward:
                return self._nested(codes, micro_batch)
            if not stored:  # every tier full: from here on, stream
                if self.moments_in_forward:
                    self.cache.free()  # its rows are in the stream's pass 0 already
                elif not self.cache.record_only:
                    self.cache.spill(self.stream)
                self.streaming = True
        if self.cache.record_only:  # not this rank's to compute
            return self._nested(codes, micro_batch)
        v = hidden[signed].float() * (-torch.expm1(logp[signed])).unsqueeze(1)
        self.stream.update_tokens(v, advantages[signed], zero_advantage_tokens=int((~signed).sum()))
        return self._nested(codes, micro_batch)

    @staticmethod
    def _nested(codes: Tensor, micro_batch: TensorDict) -> Tensor:
        return torch.nested.nested_tensor_from_jagged(codes, micro_batch["input_ids"].offsets().to(codes.device))


@contextmanager
def capture_proxy(engine: Any, feeder: ProxyFeeder) -> Iterator[None]:
    """Hook the engine's LM head and wrap its ``prepare_model_outputs`` for the duration."""
    seen: list[Tensor] = []

    def grab(module: torch.nn.Module, args: tuple) -> None:
        seen.append(args[0].detach())

    had_own = "prepare_model_outputs" in vars(engine)
    original = engine.prepare_model_outputs

    def prepare_model_outputs(output, output_args, micro_batch, logits_processor_func):
        model_output = original(
            output=output, output_args=output_args, micro_batch=micro_batch, logits_processor_func=logits_processor_func
        )
        if len(seen) != 1:
            raise RuntimeError(
                f"DelTA: expected one LM-head call per micro-batch, saw {len(seen)}; the model's forward does not "
                "go through its output embeddings (a fused or custom head?). Set "
                "actor_rollout_ref.model.use_fused_kernels=False and use a transformers *ForCausalLM model."
            )
        h = seen.pop()
        with full_precision():  # the engine runs this under torch.autocast(bf16)
            if tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
                rows = engine._gather_and_unpad_packed(h.squeeze(0), output_args["pad_size"])  # (n, H)
            else:
                lengths = micro_batch["input_ids"].offsets().diff().tolist()
                rows = torch.cat([h[i, :length] for i, length in enumerate(lengths)])  # (n, H)
            del h
            model_output[INDEX_KEY] = feeder.feed(rows, model_output["log_probs"], micro_batch)
        return model_output

    handle = _lm_head(engine.module).register_forward_pre_hook(grab)
    engine.prepare_model_outputs = prepare_model_outputs
    try:
        yield
    finally:
        handle.remove()
        if had_own:
            engine.prepare_model_outputs = original
        else:
            del engine.prepare_model_outputs  # back to the class's method


@dataclass(frozen=True)
class PassResult:
    """What `delta_passes` returns: the first forward's output, the coefficients (nested, per
    position, matching its log_probs layout; None where the output is None), the statistics
    (None on a rank that holds no cache), how many forwards ran, the cache's peak size (in all
    and per tier kind: "device", "host", "disk"; 0 on a rank that holds no cache)."""

    output: TensorDict | None
    coef: Tensor | None
    stats: DeltaStats | None
    forwards: int
    cache_peak_bytes: int
    streamed: bool
    cache_peak_by_kind: dict[str, int]


def delta_passes(
    engine: Any,
    infer: Callable[[], TensorDict | None],
    config: DeltaConfig,
    *,
    options: PassOptions = PassOptions(),
    reduce: Callable[[Tensor], Tensor] | None = None,
    gamma: Tensor | None = None,
) -> PassResult:
    """Run the old-log-prob pass with DelTA's capture in it, then the estimator's passes.

    Args:
        engine: verl's FSDP engine (``TrainingWorker.engine``).
        infer: runs the engine over this rank's whole batch once and returns its output
            (``None`` on ranks that return nothing). Called once when the cache holds the batch
            (the old-log-prob pass itself), otherwise ``DeltaStream(config).num_passes`` times.
        reduce: None = per-rank statistics; a sum all-reduce over the data-parallel group = global.
            Every rank must take the same path (cache or stream), so with a reduce the
            decision to stream is itself all-reduced.
        gamma: (2,) frozen assignment temperature with ``config.freeze_temperature`` (None:
            measure it).
    """
    stream = DeltaStream(config, reduce=reduce, gamma=gamma)
    cache = PackedProxyCache(tiers=options.tiers, record_only=not options.holds_cache)
    feeder = ProxyFeeder(stream, cache, moments_in_forward=options.moments_in_forward)
    forwards = 0
    try:
        with capture_proxy(engine, feeder):
            output = infer()
            forwards += 1
            feeder.first_forward = False
            last = output
            if reduce is not None:  # all ranks stream if any rank had to
                feeder.streaming = bool(reduce(torch.tensor([float(feeder.streaming)], dtype=torch.float64)).item() > 0)
                if feeder.streaming and cache.nbytes and options.holds_cache:
                    cache.free() if feeder.moments_in_forward else cache.spill(stream)
            if not options.holds_cache:  # the same forwards as the rank that computes, nothing else
                for _ in range(stream.num_passes - 1 if feeder.streaming else 0):
                    feeder.start_forward()
                    last = infer()
                    forwards += 1
                return PassResult(None, None, None, forwards, 0, feeder.streaming, dict.fromkeys(("device", "host", "disk"), 0))
            if feeder.streaming:
                stream.end_pass()
                while not stream.done:
                    feeder.start_forward()
                    last = infer()
                    forwards += 1
                    stream.end_pass()
                result = stream.result()
            else:
                if feeder.moments_in_forward:
                    stream.end_pass()  # pass 0 ran in the forward
                result = cache.run(stream)
    finally:
        cache.free()
    peaks = (cache.peak_nbytes, feeder.streaming, cache.peak_bytes_by_kind())
    if output is None or last is None:
        return PassResult(output, None, result.stats, forwards, *peaks)
    flat = PackedProxyCache.coefficients(result).cpu()
    zero = result.zero_advantage_coef.cpu()
    index = last.pop(INDEX_KEY)
    if last is not output:
        output.pop(INDEX_KEY, None)
    idx = index.values().cpu()
    values = torch.where(idx >= 0, flat[idx.clamp_min(0)] if flat.numel() else torch.zeros(()),
                         torch.where(idx == ZERO_ADVANTAGE_TOKEN, zero, torch.zeros(())))
    coef = torch.nested.nested_tensor_from_jagged(values.float(), index.offsets().cpu())
    return PassResult(output, coef, result.stats, forwards, *peaks)
