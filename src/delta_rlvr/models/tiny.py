"""Deterministic tiny Qwen3 models for the embedded default and for tests.

Design choices:
- The architecture is transformers' ``Qwen3ForCausalLM`` (the family the paper trains), so the
  tiny model exercises the same code paths (RMSNorm before the head, q/k norms, GQA, RoPE,
  KV-cache generation) as a real checkpoint.
- Weights are drawn by this module, not by transformers' ``_init_weights``: every parameter, in
  ``named_parameters()`` order, is filled from one CPU ``torch.Generator`` seeded with ``seed``
  (matrices ~ N(0, init_std^2), norm scales = 1, biases = 0). The same arguments therefore give
  bit-identical weights on any device and do not depend on how a transformers release
  initialises modules; the caller's global RNG state is left untouched.
- The default shape (3 layers x 128 wide, 4 query / 2 key-value heads, MLP 512, tied embeddings)
  is the 0.75M-parameter model measured in docs/models.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape and seed of a tiny Qwen3 causal LM. Validated at construction."""

    num_layers: int = 3
    """Transformer blocks."""
    hidden_size: int = 128
    """Width H of the residual stream (and of the hidden states DelTA uses)."""
    num_heads: int = 4
    """Query heads; head_dim = hidden_size / num_heads."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention); must divide num_heads."""
    intermediate_size: int = 512
    """Width of the SwiGLU MLP."""
    max_position_embeddings: int = 512
    """Longest prompt + completion the RoPE tables are sized for."""
    rope_theta: float = 10_000.0
    """RoPE base frequency."""
    tie_word_embeddings: bool = True
    """Share the input embedding with the LM head (as small Qwen3 checkpoints do)."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation of every weight matrix."""
    seed: int = 0
    """Seed of the generator that draws the weights."""

    def __post_init__(self) -> None:
        positive = ("num_layers", "hidden_size", "num_heads", "num_kv_heads",
                    "intermediate_size", "max_position_embeddings")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TinyModelConfig.{name}={value!r} must be a positive int")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyModelConfig.hidden_size={self.hidden_size} is not divisible by "
                f"num_heads={self.num_heads}; pick num_heads among the divisors of hidden_size"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"TinyModelConfig head_dim={self.hidden_size // self.num_heads} "
                f"(hidden_size / num_heads) must be even for RoPE; change num_heads"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TinyModelConfig.num_kv_heads={self.num_kv_heads} must divide "
                f"num_heads={self.num_heads} (grouped-query attention)"
            )
        if not self.init_std > 0:
            raise ValueError(f"TinyModelConfig.init_std={self.init_std!r} must be > 0 (e.g. 0.02)")


def qwen3_config(config: TinyModelConfig, tokenizer: PreTrainedTokenizerBase) -> Qwen3Config:
    """The transformers config for ``config``, with vocabulary and special ids from ``tokenizer``."""
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(
                f"tokenizer.{name} is None; the tiny model needs pad, bos and eos tokens "
                f"(use delta_rlvr.models.build_char_tokenizer() or set them on the tokenizer)"
            )
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.hidden_size // config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        tie_word_embeddings=config.tie_word_embeddings,
        initializer_range=config.init_std,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )


@torch.no_grad()
def seeded_init_(model: torch.nn.Module, seed: int, std: float) -> None:
    """Re-draw every parameter of ``model`` in place from a CPU generator seeded with ``seed``.

    Matrices (ndim >= 2: embeddings, projections, an untied head) ~ N(0, std^2); 1-D parameters
    named ``*.bias`` = 0; other 1-D parameters (RMSNorm scales) = 1. A tied head shares the
    embedding's parameter, which ``named_parameters()`` lists once, so it is drawn once.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for name, param in model.named_parameters():
        if param.ndim >= 2:
            values = torch.empty(param.shape, dtype=torch.float32).normal_(0.0, std, generator=generator)
        elif name.endswith("bias"):
            values = torch.zeros(param.shape, dtype=torch.float32)
        else:
            values = torch.ones(param.shape, dtype=torch.float32)
        param.copy_(values.to(device=param.device, dtype=param.dtype))


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    config: TinyModelConfig = TinyModelConfig(),
) -> Qwen3ForCausalLM:
    """Build a float32 ``Qwen3ForCausalLM`` on CPU with seeded weights.

    Args:
        tokenizer: gives the vocabulary size V and the pad/bos/eos ids.
        config: shape and seed.

    Returns:
        The model in eval mode (dropout is 0 anyway), with a generation config that stops at
        the tokenizer's EOS and pads with its pad id. Same arguments -> bit-identical weights.
    """
    hf_config = qwen3_config(config, tokenizer)
    # transformers draws its own (discarded) initial weights from the global RNG: fork it so
    # building a model does not shift the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        model = Qwen3ForCausalLM(hf_config)
    seeded_init_(model, config.seed, config.init_std)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Recorded so a saved checkpoint says how it was built.
    model.config.delta_rlvr_tiny_config = asdict(config)
    return model.eval()
