"""Atomic checkpoints: written to a temporary folder, fsynced, then renamed into place.

A checkpoint folder `checkpoints/step-NNNNNNNN/` holds the model and tokenizer in Hugging Face
format, `trainer_state.pt` (optimizer, scheduler, RNG states, step, data position, frozen
DelTA temperature) and `config.yaml`. A run killed in the middle of a write leaves only a
`.tmp-*` folder, which resume ignores and removes; the previous complete checkpoint stays.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.pt"


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Path, step: int, model, tokenizer, state: dict[str, Any], config_yaml: str, keep_last: int) -> Path:
    """Write checkpoint `step` atomically under `root`, then prune to the last `keep_last`."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    (tmp / "config.yaml").write_text(config_yaml)
    _fsync_tree(tmp)
    if final.exists():  # a re-run of the same step: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint; leftover temporary folders of killed writes are removed."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-step-"):
                shutil.rmtree(p, ignore_errors=True)
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / STATE_FILE, weights_only=False)
