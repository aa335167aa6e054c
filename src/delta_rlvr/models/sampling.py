"""Batched rollout sampling: G completions per prompt with the KV cache.

Design choices:
- Sampling is transformers' ``generate`` (KV cache, stop at EOS). Every sampling knob is set
  explicitly in a fresh ``GenerationConfig`` (top-k off, no repetition penalty, ...) because
  transformers fills unset fields from the model's own generation config, whose extra warpers
  would make the sampler differ from the softmax(logits / T) policy the loss assumes.
- ``temperature == 0`` means greedy decoding (evaluation); top-p is then ignored.
- Rows are prompt-major: row ``p * G + g`` is sample ``g`` of prompt ``p``; ``group_index`` holds
  ``p`` so advantages can be grouped without recomputing the layout.
- Prompts are left-padded (so every row's last prompt token sits at column P - 1 and generation
  appends at the same column); completions are right-padded.
- A completion is valid up to and including its first EOS; everything after it is replaced by
  the pad id and masked out (True = valid). The EOS token itself is valid: the policy chose to
  stop and that choice is trained like any other token.
- ``seed`` makes a call reproducible without touching the caller's RNG streams: sampling runs
  inside ``torch.random.fork_rng`` on the model's device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedModel


@dataclass(frozen=True)
class SampleBatch:
    """Sampled completions of B = num_prompts * G rows, all on the model's device.

    Shapes: B rows, P prompt columns, T completion columns.
    """

    prompt_ids: torch.Tensor
    """(B, P) int64, left-padded with the pad id."""
    prompt_mask: torch.Tensor
    """(B, P) bool, True on real prompt tokens."""
    completion_ids: torch.Tensor
    """(B, T) int64, right-padded with the pad id; T = longest completion in the batch."""
    completion_mask: torch.Tensor
    """(B, T) bool, True on valid completion tokens, EOS included when it was emitted."""
    group_index: torch.Tensor
    """(B,) int64, index of the prompt each row was sampled from (0 .. num_prompts - 1)."""
    eos_token_ids: tuple[int, ...]
    """Ids that ended a completion."""

    def __post_init__(self) -> None:
        b, p = self.prompt_ids.shape
        t = self.completion_ids.shape[1]
        expected = {"prompt_mask": (b, p), "completion_mask": (b, t), "group_index": (b,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(
                    f"SampleBatch.{name} has shape {tuple(getattr(self, name).shape)}, "
                    f"expected {shape} from prompt_ids {(b, p)} and completion_ids {(b, t)}"
                )

    @property
    def completion_lengths(self) -> torch.Tensor:
        """(B,) int64 number of valid completion tokens per row."""
        return self.completion_mask.sum(dim=-1)

    @property
    def ended_with_eos(self) -> torch.Tensor:
        """(B,) bool, True where the completion stopped by emitting EOS (not by length)."""
        eos = torch.tensor(self.eos_token_ids, device=self.completion_ids.device)
        return (torch.isin(self.completion_ids, eos) & self.completion_mask).any(dim=-1)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token-id lists into a left-padded batch.

    Returns:
        ids (N, L) int64 and mask (N, L) bool (True = real token), L = longest sequence.
    """
    if len(sequences) == 0:
        raise ValueError("left_pad got no sequences; pass at least one token-id list")
    for index, sequence in enumerate(sequences):
        if len(sequence) == 0:
            raise ValueError(f"sequence {index} is empty; every prompt needs at least one token")
    width = max(len(sequence) for sequence in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence):] = torch.as_tensor(list(sequence), dtype=torch.long)
        mask[row, width - len(sequence):] = True
    return ids.to(device), mask.to(device)


def valid_through_first_eos(completion_ids: torch.Tensor, eos_token_ids: Sequence[int]) -> torch.Tensor:
    """(B, T) bool mask: True up to and including the first EOS of each row (all True if none)."""
    eos = torch.tensor(list(eos_token_ids), device=completion_ids.device)
    is_eos = torch.isin(completion_ids, eos).long()
    eos_before = torch.cumsum(is_eos, dim=-1) - is_eos  # (B, T) EOS count strictly before t
    return eos_before == 0


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_id_tuple(value: int | Sequence[int] | None, name: str, fallback: int | Sequence[int] | None) -> tuple[int, ...]:
    value = fallback if value is None else value
    if value is None:
        raise ValueError(
            f"{name} is not given and the model's generation config has none; pass {name}= "
            f"(e.g. tokenizer.{name})"
        )
    ids = (value,) if isinstance(value, int) else tuple(int(v) for v in value)
    if not ids:
        raise ValueError(f"{name} is empty; pass at least one token id")
    return ids


@torch.no_grad()
def sample_completions(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    *,
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
) -> SampleBatch:
    """Sample ``num_samples`` completions for each prompt.

    Args:
        model: any HF causal LM with ``generate``; its device is used for everything.
        prompts: N token-id lists (special tokens such as BOS already included).
        num_samples: G completions per prompt; B = N * G rows, prompt-major.
        max_new_tokens: cap on completion length (a completion that reaches it is valid
            through its last token and has no EOS).
        temperature: sampling temperature T > 0, or 0 for greedy decoding.
        top_p: nucleus mass in (0, 1]; 1 keeps the full distribution.
        eos_token_id: id(s) that end a completion; default: the model's generation config.
        pad_token_id: padding id; default: the model's generation config, else the first EOS.
        seed: if given, the call is reproducible and leaves the global RNG state unchanged.

    Returns:
        A ``SampleBatch`` on the model's device.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1 (G completions per prompt)")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy decoding)")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1]; use 1.0 to disable nucleus sampling")
    model_gen = model.generation_config
    eos_ids = _as_id_tuple(eos_token_id, "eos_token_id", model_gen.eos_token_id)
    if pad_token_id is None:
        pad_token_id = model_gen.pad_token_id if model_gen.pad_token_id is not None else eos_ids[0]

    device = _model_device(model)
    prompt_ids, prompt_mask = left_pad(prompts, pad_token_id, device)
    prompt_ids = prompt_ids.repeat_interleave(num_samples, dim=0)  # (B, P)
    prompt_mask = prompt_mask.repeat_interleave(num_samples, dim=0)  # (B, P)
    group_index = torch.arange(len(prompts), device=device).repeat_interleave(num_samples)  # (B,)

    greedy = temperature == 0
    # Greedy decoding ignores the warpers (and transformers warns when they are set with it).
    warpers = {} if greedy else {
        "temperature": float(temperature), "top_p": float(top_p), "top_k": 0, "min_p": None,
        "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    }
    generation_config = GenerationConfig(
        do_sample=not greedy,
        **warpers,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_new_tokens=0,
        max_new_tokens=max_new_tokens,
        num_beams=1,
        num_return_sequences=1,
        eos_token_id=list(eos_ids),
        pad_token_id=pad_token_id,
        use_cache=True,
    )
    fork = (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        if seed is not None else contextlib.nullcontext()
    )
    with fork:
        if seed is not None:
            torch.manual_seed(seed)
        sequences = model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask.long(),
            generation_config=generation_config,
        )  # (B, P + T')
    completion_ids = sequences[:, prompt_ids.shape[1]:]  # (B, T')
    completion_mask = valid_through_first_eos(completion_ids, eos_ids)  # (B, T')
    width = int(completion_mask.sum(dim=-1).max())
    completion_ids = completion_ids[:, :width].masked_fill(~completion_mask[:, :width], pad_token_id)
    return SampleBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids.contiguous(),
        completion_mask=completion_mask[:, :width].contiguous(),
        group_index=group_index,
        eos_token_ids=eos_ids,
    )


def decode_completions(tokenizer, batch: SampleBatch) -> list[str]:
    """The completion text of every row, padding masked out and special tokens dropped."""
    ids = batch.completion_ids.masked_fill(~batch.completion_mask, tokenizer.pad_token_id)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)
