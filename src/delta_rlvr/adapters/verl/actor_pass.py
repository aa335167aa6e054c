"""DelTA's coefficient pass inside verl's engine forward (verl 0.9.1, FSDP engine).

Shapes: b responses in a micro-batch, R padded response length, H hidden size, n tokens of a
micro-batch's packed (no-padding) sequences; B responses of this rank's whole batch.

How it plugs in, without copying engine code:
- A forward pre-hook on the LM head records its input h (the final-normed hidden state).
  With remove-padding it is the packed (1, n / sp + pad, H) sequence: the engine's own
  ``_gather_and_unpad_packed`` gathers it over the Ulysses sequence-parallel group and strips
  the pad, exactly as it does for the log-probs, so sequence parallelism is respected.
  Without remove-padding it is (b, L, H), narrowed to each sequence's length.
- The engine's ``prepare_model_outputs`` is wrapped on the instance: after it has made the
  log-probs (at the rollout temperature, which the engine applies), verl's own
  ``no_padding_2_padding`` slices h and log p to the response tokens, and the proxy
  v = (1 - p) h is fed to a ``DeltaStream``.
- Pass 0 is verl's old-log-prob pass itself. The streaming form needs K + 1 more passes over
  the batch (the proxy of a whole rollout batch does not fit in memory at the paper's 20k-token
  responses); they rerun the engine's forward. The final pass writes, per token position, the
  index of that token's coefficient as a model output, so verl's own micro-batch reassembly
  (dynamic batch sizes included) puts it back in sample order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from tensordict import TensorDict
from torch import Tensor

from verl.utils import tensordict_utils as tu
from verl.workers.utils.padding import no_padding_2_padding

from delta_rlvr.core import DeltaConfig, DeltaStats, DeltaStream, grad_proxy

#: name of the (B,) per-response advantage the driver sends with the old-log-prob call
ADVANTAGE_KEY = "delta_advantages"
#: non-tensor key carrying DeltaSettings.as_dict() to the workers
SETTINGS_KEY = "delta_settings"
#: per-position model outputs this module adds
INDEX_KEY = "delta_index"
COEF_KEY = "delta_coef"


def check_engine_supported(engine: Any, data: TensorDict) -> None:
    """Refuse engine settings under which the LM head's input cannot be captured."""
    if tu.get_non_tensor_data(data=data, key="use_fused_kernels", default=False):
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


class ProxyFeeder:
    """Feeds each micro-batch's proxy to the stream; in the final pass, emits coefficient indices."""

    def __init__(self, stream: DeltaStream) -> None:
        self.stream = stream
        self.offset = 0  # coefficients emitted so far in the final pass (feeding order)

    def feed(self, rows: Tensor, log_probs: Tensor, micro_batch: TensorDict) -> Tensor | None:
        """rows (n, H) head inputs and log_probs (nested, n values) of one micro-batch."""
        h = no_padding_2_padding(rows, micro_batch)  # (b, R, H): h_t predicts response token t
        logp = no_padding_2_padding(log_probs, micro_batch).float()  # (b, R)
        mask = micro_batch["response_mask"].bool()  # (b, R)
        advantages = micro_batch[ADVANTAGE_KEY].float()  # (b,)
        final = self.stream.phase == "final"
        self.stream.update(grad_proxy(h, logp, mask), advantages, mask)
        if not final:
            return None
        b, r = mask.shape
        index = self.offset + torch.arange(b * r, device=mask.device).reshape(b, r)
        self.offset += b * r
        return _response_to_positions(index, micro_batch)


def _response_to_positions(values: Tensor, micro_batch: TensorDict) -> Tensor:
    """Inverse of ``no_padding_2_padding``: (b, R) response values -> nested per-position tensor
    (value at the position whose output predicts the token; -1 elsewhere)."""
    offsets = micro_batch["input_ids"].offsets()
    response_lens = micro_batch["attention_mask"][:, micro_batch["prompts"].shape[1] :].sum(dim=1)
    flat = torch.full((int(offsets[-1]),), -1, dtype=torch.int64, device=values.device)
    for i, (resp_len, end) in enumerate(zip(response_lens.tolist(), offsets[1:].tolist())):
        flat[end - resp_len - 1 : end - 1] = values[i, :resp_len]
    return torch.nested.nested_tensor_from_jagged(flat, offsets.to(flat.device))


@contextmanager
def capture_proxy(engine: Any, feeder: ProxyFeeder) -> Iterator[None]:
    """Hook the engine's LM head and wrap its ``prepare_model_outputs`` for the duration."""
    seen: list[Tensor] = []

    def grab(module: torch.nn.Module, args: tuple) -> None:
        seen.append(args[0].detach())

    original = engine.prepare_model_outputs

    def prepare_model_outputs(output, output_args, micro_batch, logits_processor_func):
        model_output = original(
            output=output, output_args=output_args, micro_batch=micro_batch, logits_processor_func=logits_processor_func
        )
        if len(seen) != 1:
            raise RuntimeError(f"DelTA: expected one LM-head call per micro-batch, saw {len(seen)}")
        h = seen.pop()
        if tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True):
            rows = engine._gather_and_unpad_packed(h.squeeze(0), output_args["pad_size"])  # (n, H)
        else:
            lengths = micro_batch["input_ids"].offsets().diff().tolist()
            rows = torch.cat([h[i, :length] for i, length in enumerate(lengths)])  # (n, H)
        index = feeder.feed(rows, model_output["log_probs"], micro_batch)
        if index is not None:
            model_output[INDEX_KEY] = index
        return model_output

    handle = _lm_head(engine.module).register_forward_pre_hook(grab)
    engine.prepare_model_outputs = prepare_model_outputs
    try:
        yield
    finally:
        handle.remove()
        del engine.prepare_model_outputs  # back to the class's method


def delta_passes(
    engine: Any,
    infer: Callable[[], TensorDict | None],
    config: DeltaConfig,
    *,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> tuple[TensorDict | None, Tensor | None, DeltaStats]:
    """Run the old-log-prob pass with DelTA pass 0 in it, then the stream's remaining passes.

    Args:
        engine: verl's FSDP engine (``TrainingWorker.engine``).
        infer: runs the engine over this rank's whole batch once and returns its output
            (``None`` on ranks that return nothing); called ``DeltaStream(config).num_passes``
            times, the first call being the old-log-prob pass whose output is returned.
        reduce: None = per-rank statistics; a sum all-reduce over the data-parallel group = global.

    Returns:
        (output of the first call, coef as a nested per-position float32 tensor matching the
        output's log_probs layout (None where the output is None), statistics).
    """
    stream = DeltaStream(config, reduce=reduce)
    feeder = ProxyFeeder(stream)
    with capture_proxy(engine, feeder):
        output = infer()
        stream.end_pass()
        last = output
        while not stream.done:
            last = infer()
            stream.end_pass()
    result = stream.result()
    if output is None or last is None:
        return output, None, result.stats
    flat = torch.cat([c.reshape(-1) for c in result.coef]).cpu()
    index = last[INDEX_KEY]
    idx = index.values().cpu()
    values = torch.where(idx >= 0, flat[idx.clamp_min(0)], torch.zeros((), dtype=flat.dtype))
    coef = torch.nested.nested_tensor_from_jagged(values, index.offsets().cpu())
    return output, coef, result.stats
