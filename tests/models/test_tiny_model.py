"""The tiny Qwen3 builder: exact size, seeded bit-identical weights, tied head, validation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import Qwen3ForCausalLM

from delta_rlvr.models import TinyModelConfig, build_tiny_model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_default_model_has_the_hand_counted_parameter_number(char_tokenizer):
    model = build_tiny_model(char_tokenizer)
    assert isinstance(model, Qwen3ForCausalLM)
    # embed 100*128; per layer: q 128*128 + k,v 128*64 each + o 128*128 + q/k norm 32 each
    # + MLP 3*128*512 + two norms 128 each = 246,080; final norm 128; head tied.
    assert sum(p.numel() for p in model.parameters()) == 100 * 128 + 3 * 246_080 + 128 == 751_168
    assert model.config.vocab_size == len(char_tokenizer)
    assert model.config.head_dim == 32
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_same_arguments_give_bit_identical_weights_and_other_seeds_differ(char_tokenizer):
    config = TinyModelConfig(num_layers=2, hidden_size=64, intermediate_size=128, seed=11)
    first, second = build_tiny_model(char_tokenizer, config), build_tiny_model(char_tokenizer, config)
    assert _same_weights(first, second)
    other = build_tiny_model(char_tokenizer, replace(config, seed=12))
    assert not torch.equal(first.model.embed_tokens.weight, other.model.embed_tokens.weight)


def test_building_does_not_move_the_global_random_stream(char_tokenizer):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_tiny_model(char_tokenizer, TinyModelConfig(num_layers=1, hidden_size=32, intermediate_size=64))
    assert torch.equal(torch.rand(3), expected)


def test_weights_follow_the_stated_initialisation(char_tokenizer):
    model = build_tiny_model(char_tokenizer, TinyModelConfig(init_std=0.05))
    for name, param in model.named_parameters():
        if param.ndim == 1:
            assert torch.equal(param, torch.ones_like(param)), name
    q = model.model.layers[0].mlp.gate_proj.weight  # 65,536 draws: std within 2%
    assert abs(q.std().item() - 0.05) < 0.001 and abs(q.mean().item()) < 0.001


def test_untied_model_has_its_own_head_and_reloads_identically(tmp_path, char_tokenizer):
    model = build_tiny_model(char_tokenizer, TinyModelConfig(num_layers=1, tie_word_embeddings=False))
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    assert _same_weights(model, Qwen3ForCausalLM.from_pretrained(tmp_path))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden_size": 130}, "hidden_size=130 is not divisible by num_heads=4"),
        ({"num_kv_heads": 3}, "num_kv_heads=3 must divide num_heads=4"),
        ({"hidden_size": 12, "num_heads": 4}, "must be even for RoPE"),
        ({"num_layers": 0}, "num_layers=0 must be a positive int"),
        ({"init_std": 0.0}, "init_std=0.0 must be > 0"),
    ],
)
def test_bad_shapes_fail_at_construction_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        TinyModelConfig(**fields)
