"""Samplers behind one interface: prompts (token ids) in, k response texts per prompt out.

- `HFSampler` (default): the trainer's own `sample_completions` (transformers' generate with a
  KV cache), in batches of prompts, bf16 autocast on CUDA as in training.
- `VLLMSampler`: vLLM's offline `LLM.generate`, chosen by backend "auto" when vllm is
  importable and CUDA is present. Written against vLLM's documented API (`LLM`,
  `SamplingParams(n=, seed=)`, token-id prompts) but not exercised by the test suite, which
  runs on CPU without vLLM.

Every call returns, beside the texts, whether each response was cut at `max_new_tokens` (it
ended without an end-of-sequence token: HF, `SampleBatch.ended_with_eos`; vLLM, finish_reason
"length"), which the report counts. Every call takes one seed per prompt, a fixed function of (evaluation seed, benchmark, problem
position), so which problems were already done does not change the samples of the others
(with vLLM exactly; with HF per batch - see docs/evaluation.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingSettings:
    k: int = 16
    """Samples per problem (avg@k, pass@k)."""
    temperature: float = 1.0
    """Sampling temperature (0 = greedy)."""
    top_p: float = 0.7
    """Nucleus sampling mass (the paper's evaluation: 0.7)."""
    max_new_tokens: int = 1024
    """Longest response, in tokens."""

    def __post_init__(self) -> None:
        from delta_rlvr.errors import ConfigError

        if self.k < 1:
            raise ConfigError(f"k = {self.k} is invalid: sample at least 1 response per problem (the paper: 16)")
        if self.temperature < 0:
            raise ConfigError(f"temperature = {self.temperature} is invalid: use >= 0 (0 = greedy; the paper: 1.0)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p = {self.top_p} is invalid: use a value in (0, 1] (the paper: 0.7)")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens = {self.max_new_tokens} is invalid: use >= 1")


@dataclass(frozen=True)
class Samples:
    texts: list[list[str]]
    """len(prompts) lists of settings.k response texts."""
    cut: list[list[bool]]
    """Same shape: True where the response stopped at max_new_tokens, not at end-of-sequence."""


class Sampler(Protocol):
    def sample(self, prompts: list[list[int]], seeds: list[int], settings: SamplingSettings) -> Samples:
        """settings.k responses per prompt, and which of them were cut at the length limit."""


class HFSampler:
    def __init__(self, model, tokenizer, device: torch.device) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device

    def sample(self, prompts: list[list[int]], seeds: list[int], settings: SamplingSettings) -> Samples:
        from delta_rlvr.models import decode_completions, sample_completions

        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext()
        pad = self.tokenizer.pad_token_id
        with autocast:
            # One generate call per batch, seeded by its first prompt's seed.
            batch = sample_completions(
                self.model, prompts, num_samples=settings.k, max_new_tokens=settings.max_new_tokens,
                temperature=settings.temperature, top_p=settings.top_p, pad_token_id=pad, seed=seeds[0],
            )
        texts = decode_completions(self.tokenizer, batch)
        cut = (~batch.ended_with_eos).tolist()
        k = settings.k
        return Samples([texts[i * k:(i + 1) * k] for i in range(len(prompts))], [cut[i * k:(i + 1) * k] for i in range(len(prompts))])


class VLLMSampler:
    def __init__(self, weights_dir: str, seed: int) -> None:
        from vllm import LLM

        self.llm = LLM(model=weights_dir, tokenizer=weights_dir, seed=seed, dtype="auto")

    def sample(self, prompts: list[list[int]], seeds: list[int], settings: SamplingSettings) -> Samples:
        from vllm import SamplingParams

        params = [
            SamplingParams(n=settings.k, temperature=settings.temperature, top_p=settings.top_p,
                           max_tokens=settings.max_new_tokens, seed=s, skip_special_tokens=True)
            for s in seeds
        ]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
        return Samples([[o.text for o in out.outputs] for out in outputs],
                       [[o.finish_reason == "length" for o in out.outputs] for out in outputs])


def vllm_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def pick_backend(name: str) -> str:
    """"auto" -> "vllm" when vllm is importable and CUDA is present, else "hf"."""
    from delta_rlvr.errors import ConfigError

    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    if name == "vllm" and not vllm_available():
        raise ConfigError("backend = 'vllm' needs the vllm package and a CUDA device; use --backend hf")
    if name not in ("hf", "vllm"):
        raise ConfigError(f"backend = {name!r} is invalid: choose 'auto', 'hf' or 'vllm'")
    return name
