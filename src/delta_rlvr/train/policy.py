"""Load the policy model and tokenizer by name, or from a run's checkpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import torch

from delta_rlvr.errors import ConfigError
from delta_rlvr.train.config import ModelConfig

EMBEDDED = {"embedded:arith-tiny": "arith-tiny", "embedded:arith-verbose": "arith-verbose"}


def embedded_model_dir(name: str = "arith-tiny") -> Path:
    return Path(str(resources.files("delta_rlvr") / "assets" / name))


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device = {spec!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(spec)


@contextlib.contextmanager
def library_progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' own bars ("Loading weights", "Writing model shards") on or off for the block
    (run.progress), restored afterwards: the switch is global to the process."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    if not enabled and before:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not enabled and before:
            hf_logging.enable_progress_bar()


def load_policy(cfg: ModelConfig, checkpoint: Path | None = None):
    """(model, tokenizer, device). Weights are kept in float32 (bf16 is used through autocast on
    CUDA, so the optimizer updates float32 master weights), or in float64 with model.dtype=float64."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(cfg.device)
    if checkpoint is not None:
        path = checkpoint
    elif cfg.name in EMBEDDED:
        path = embedded_model_dir(EMBEDDED[cfg.name])
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"model.name = {cfg.name!r}: the embedded model is missing from {path}; rebuild it with "
                "`python scripts/build_default_model.py`"
            )
    elif cfg.name == "smollm2-135m-instruct":
        from delta_rlvr.models import smollm2_checkpoint

        path = smollm2_checkpoint()
    else:
        path = Path(cfg.name)
        if not path.is_dir():
            raise ConfigError(
                f"model.name = {cfg.name!r} is neither a built-in name ({sorted(EMBEDDED) + ['smollm2-135m-instruct']}) "
                "nor a local Hugging Face model folder"
            )
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer, device
