"""Atomic checkpoints: complete folders only, leftovers of killed writes ignored, pruning."""

import torch

from delta_rlvr.models import TinyModelConfig, build_char_tokenizer, build_tiny_model
from delta_rlvr.train.checkpoint import latest_checkpoint, list_checkpoints, load_state, save_checkpoint


def _model():
    tok = build_char_tokenizer()
    return build_tiny_model(tok, TinyModelConfig(num_layers=1, hidden_size=32, num_heads=2, num_kv_heads=1, intermediate_size=64)), tok


def test_checkpoints_are_complete_folders_and_only_the_last_n_are_kept(tmp_path):
    model, tok = _model()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, tok, {"step": step}, "x: 1\n", keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    assert load_state(latest_checkpoint(tmp_path))["step"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_a_half_written_checkpoint_is_ignored_and_removed(tmp_path):
    model, tok = _model()
    save_checkpoint(tmp_path, 5, model, tok, {"step": 5}, "", keep_last=3)
    partial = tmp_path / ".tmp-step-00000006-123"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"trunc")
    no_state = tmp_path / "step-00000007"  # renamed folder without its state file cannot happen, but is not trusted
    no_state.mkdir()
    assert latest_checkpoint(tmp_path).name == "step-00000005"
    assert not partial.exists()


def test_saved_weights_round_trip_exactly(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = _model()
    path = save_checkpoint(tmp_path, 1, model, tok, {"step": 1}, "", keep_last=1)
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
