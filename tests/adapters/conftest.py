"""Shared fixtures for the adapter tests: one torch thread, the char tokenizer, tiny Qwen3s."""

from __future__ import annotations

import pytest
import torch

from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model

# 2 x 64 Qwen3: big enough to have a real backbone / head split, fast on one thread.
TINY = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128, seed=7)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The machine's 2 cores are shared; tiny models gain nothing from a second thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def char_tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_config():
    return TINY


@pytest.fixture
def tiny_model(char_tokenizer):
    """A fresh seeded model per call (trainers edit weights in place)."""
    return build_tiny_model(char_tokenizer, TINY)
