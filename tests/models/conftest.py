"""Shared fixtures for the model-side tests: the character tokenizer and small seeded Qwen3s."""

from __future__ import annotations

import pytest
import torch

from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model

# Smaller than the default so that sampling and gradient tests stay fast on 2 cores.
SMALL = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128, seed=3)


@pytest.fixture(scope="session")
def char_tokenizer():
    return build_char_tokenizer()


@pytest.fixture
def small_model(char_tokenizer):
    """2 x 64 Qwen3 with a tied head, fresh per test (tests may edit its weights)."""
    return build_tiny_model(char_tokenizer, SMALL)


@pytest.fixture
def small_untied_model(char_tokenizer):
    """Same shape with a separate LM-head matrix."""
    from dataclasses import replace

    return build_tiny_model(char_tokenizer, replace(SMALL, tie_word_embeddings=False))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine OpenMP
    spin-waiting makes them many times slower; restored after each test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
