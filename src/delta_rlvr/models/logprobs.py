"""Per-token log-probs, entropies and final hidden states of sampled completions.

One function serves both the old-policy pass (under ``torch.no_grad``; DelTA also needs the
hidden states) and the training forward (grad enabled; log-probs for the ratio).

Design choices:
- The backbone runs once over prompt + completion; the LM head and the log-softmax run on
  ``chunk_size`` tokens at a time, and only on valid completion tokens, so a (B, T, V) logits
  tensor never exists: peak extra memory is (chunk_size, V) floats.
- With grad enabled each chunk is wrapped in activation checkpointing: autograd keeps the chunk's
  hidden states, not its logits, and recomputes the chunk's head in the backward pass. Without
  it, autograd would keep every chunk's logits alive until backward and chunking would save
  nothing. Cost: one extra head matmul per chunk in backward.
- The head is called as a module (``model.get_output_embeddings()``), so tied embeddings, LoRA
  wrappers and the head's dtype are respected; logits are cast to float32 before dividing by
  the temperature (at least float32: a bf16 head is upcast, a float64 model keeps float64),
  and the returned log-probs and entropies are float32.
- Hidden state h_t is the input of the LM head that produces the distribution of completion
  token t: the backbone output (after its final norm) at column P - 1 + t. It is returned
  in the model's dtype; invalid positions are zeroed.
- Position ids are recomputed from the attention mask (first real token = position 0), as
  ``generate`` does for left-padded prompts, so log-probs match what the sampler used.
- Models that transform logits after the head (Gemma-2 soft-capping, Cohere/Granite logit
  scaling) are refused with a clear error rather than silently mis-scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

DEFAULT_CHUNK_SIZE = 1024


@dataclass(frozen=True)
class TokenLogProbs:
    """Per-token quantities of B completions of T tokens (zeros where the mask is False)."""

    logp: torch.Tensor
    """(B, T) float32 log pi(y_t | prefix) at the given temperature: log_softmax(logits / T)[y_t]."""
    entropy: torch.Tensor
    """(B, T) float32 entropy of softmax(logits / T) at each position, in nats."""
    hidden: torch.Tensor | None
    """(B, T, H) input of the LM head for each completion token (model dtype), or None."""


_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _check_plain_logits(model: PreTrainedModel) -> None:
    """Raise if the model modifies logits after its LM head (we only replicate a plain head)."""
    config = getattr(model, "config", None)
    for name in _LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value is not None and value != 1 and value != 1.0:
            raise NotImplementedError(
                f"{type(model).__name__} sets config.{name}={value!r}: its logits are transformed "
                f"after the LM head, which completion_logprobs does not replicate; use a model "
                f"with a plain linear head or extend delta_rlvr.models.logprobs for it"
            )


def backbone_and_head(model: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The decoder stack (returns final-normed hidden states) and the LM head of a causal LM."""
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(
            f"{type(model).__name__}.get_output_embeddings() is None: pass a causal LM "
            f"(an *ForCausalLM class), not a bare backbone"
        )
    backbone = None
    if hasattr(model, "get_decoder"):
        backbone = model.get_decoder()
    if backbone is None or backbone is model:
        backbone = getattr(model, "model", None)
    if backbone is None:
        raise ValueError(
            f"cannot find the backbone of {type(model).__name__}: neither get_decoder() nor "
            f".model gives the decoder stack"
        )
    return backbone, head


def _head_chunk(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, inv_temperature: float):
    """logp and entropy of N tokens: hidden (N, H), targets (N,) -> ((N,), (N,)) float32."""
    logits = head(hidden)  # (N, V) in the head's dtype
    # At least float32 (bf16/fp16 heads are upcast; a float64 model stays float64).
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) * inv_temperature
    log_probs = F.log_softmax(logits, dim=-1)  # (N, V)
    logp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N,)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)  # (N,)
    return logp.float(), entropy.float()


def chunked_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``targets`` and entropies, computing the head on ``chunk_size`` rows at a time.

    Args:
        head: the LM head (maps (N, H) -> (N, V)).
        hidden: (N, H) head inputs.
        targets: (N,) int64 token ids.
        temperature: logits are divided by it (> 0).
        chunk_size: rows per head call.

    Returns:
        logp (N,) float32 and entropy (N,) float32.
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0 to score tokens (greedy has no log-probs)")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1 (tokens per LM-head call)")
    inv_temperature = 1.0 / float(temperature)
    needs_graph = torch.is_grad_enabled() and (
        hidden.requires_grad or any(p.requires_grad for p in head.parameters())
    )
    logps, entropies = [], []
    for start in range(0, hidden.shape[0], chunk_size):
        h_chunk = hidden[start:start + chunk_size]  # (n, H)
        y_chunk = targets[start:start + chunk_size]  # (n,)
        if needs_graph:
            logp, entropy = checkpoint(
                _head_chunk, head, h_chunk, y_chunk, inv_temperature,
                use_reentrant=False, preserve_rng_state=False,
            )
        else:
            logp, entropy = _head_chunk(head, h_chunk, y_chunk, inv_temperature)
        logps.append(logp)
        entropies.append(entropy)
    if not logps:
        empty = hidden.new_zeros((0,), dtype=torch.float32)
        return empty, empty
    return torch.cat(logps), torch.cat(entropies)


def check_completion_layout(prompt_ids, prompt_mask, completion_ids, completion_mask, where: str) -> None:
    """Left-padded (B, P) prompts and right-padded (B, T) completions with masks of the same
    shapes, one prompt row per completion row; ValueError naming `where` otherwise."""
    if prompt_ids.ndim != 2 or completion_ids.ndim != 2:
        raise ValueError(f"{where}: prompt_ids {tuple(prompt_ids.shape)} and completion_ids "
                         f"{tuple(completion_ids.shape)} must both be (B, length) int tensors")
    if prompt_ids.shape != prompt_mask.shape or completion_ids.shape != completion_mask.shape:
        raise ValueError(
            f"{where}: ids and masks disagree: prompt_ids {tuple(prompt_ids.shape)} vs prompt_mask "
            f"{tuple(prompt_mask.shape)}, completion_ids {tuple(completion_ids.shape)} vs completion_mask "
            f"{tuple(completion_mask.shape)}; pass masks of the same shape as the ids"
        )
    if prompt_ids.shape[0] != completion_ids.shape[0]:
        raise ValueError(f"{where}: prompt batch {prompt_ids.shape[0]} != completion batch {completion_ids.shape[0]}; "
                         "pass one prompt row per completion row (repeat prompts G times)")
    if prompt_ids.shape[1] < 1:
        raise ValueError(f"{where}: prompt_ids has no columns; every row needs at least one prompt token")
    if prompt_ids.shape[0] and not bool(prompt_mask.bool()[:, -1].all()):
        raise ValueError(f"{where}: prompt_mask[:, -1] has False entries: prompts must be left-padded so that every "
                         "row's last prompt token is in the last column (see delta_rlvr.models.left_pad)")


def completion_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    return_hidden: bool = False,
) -> TokenLogProbs:
    """Score sampled completions with one backbone pass and a chunked LM head.

    Works with grad enabled (training forward) and under ``torch.no_grad`` (old-policy pass).

    Args:
        model: any HF causal LM with a linear LM head.
        prompt_ids: (B, P) int64, left-padded.
        prompt_mask: (B, P) bool, True on real prompt tokens (each row needs at least one).
        completion_ids: (B, T) int64, right-padded.
        completion_mask: (B, T) bool, True on valid tokens (a prefix of each row).
        temperature: the sampling temperature T used in the rollout (> 0).
        chunk_size: tokens per LM-head call.
        return_hidden: also return the (B, T, H) head inputs (DelTA's h_t).

    Returns:
        ``TokenLogProbs`` with zeros at invalid positions.
    """
    check_completion_layout(prompt_ids, prompt_mask, completion_ids, completion_mask, "completion_logprobs")
    _check_plain_logits(model)
    backbone, head = backbone_and_head(model)

    prompt_len = prompt_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + T)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1).long()  # (B, P + T)
    position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)  # (B, P + T)
    outputs = backbone(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    )
    # Column P - 1 + t holds the head input that predicts completion token t.
    hidden = outputs.last_hidden_state[:, prompt_len - 1:-1]  # (B, T, H)

    valid = completion_mask.bool()  # (B, T)
    flat_index = valid.flatten().nonzero().squeeze(-1)  # (N,)
    h_valid = hidden.flatten(0, 1).index_select(0, flat_index)  # (N, H)
    y_valid = completion_ids.flatten().index_select(0, flat_index)  # (N,)
    logp_valid, entropy_valid = chunked_logprobs(
        head, h_valid, y_valid, temperature=temperature, chunk_size=chunk_size
    )  # (N,), (N,)

    shape = completion_ids.shape
    zeros = torch.zeros(shape.numel(), dtype=torch.float32, device=completion_ids.device)
    logp = zeros.index_put((flat_index,), logp_valid).view(shape)  # (B, T)
    entropy = zeros.index_put((flat_index,), entropy_valid).view(shape)  # (B, T)
    if return_hidden:
        hidden = hidden.masked_fill(~valid.unsqueeze(-1), 0.0)  # (B, T, H), zero where invalid
    return TokenLogProbs(logp=logp, entropy=entropy, hidden=hidden if return_hidden else None)
