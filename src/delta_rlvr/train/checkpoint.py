"""Atomic checkpoints: written to a temporary folder, fsynced, then renamed into place.

A checkpoint folder `checkpoints/step-NNNNNNNN/` holds the model and tokenizer in Hugging Face
format, `trainer_state.pt` (optimizer, scheduler, RNG states, step, data position, frozen
DelTA temperature), `config.yaml`, and `manifest.json` (size and SHA-256 of every other file),
written last. A run killed in the middle of a write leaves only a `.tmp-*` folder, which resume
ignores and removes; the previous complete checkpoint stays. A checkpoint damaged afterwards
(a truncated or deleted file) fails its manifest check, and `latest_checkpoint` falls back to
the newest one that passes, saying which it skipped and why. A failed write (a full disk)
removes its temporary folder and raises `CheckpointError` naming the folder and the intact
previous checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from delta_rlvr.errors import CheckpointError

STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.pt"
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """manifest.json: {relative path: {size, sha256}} of every file in ``folder`` (written last)."""
    files = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def check_checkpoint(folder: Path) -> str | None:
    """None when ``folder`` is a complete, undamaged checkpoint; else the reason it is not."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return _check_unlisted(folder)
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"its {MANIFEST} is unreadable ({err})"
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{name} has {path.stat().st_size} bytes, {meta['size']} were written"
        if _sha256(path) != meta["sha256"]:
            return f"{name} does not match the checksum written with it"
    return None


def _check_unlisted(folder: Path) -> str | None:
    """Checkpoints written before manifests existed: the state and the weights must load."""
    if not (folder / STATE_FILE).is_file():
        return f"{STATE_FILE} is missing"
    try:
        torch.load(folder / STATE_FILE, weights_only=False, map_location="cpu")
    except Exception as err:
        return f"{STATE_FILE} cannot be read ({type(err).__name__})"
    weights = folder / "model.safetensors"
    if weights.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as fh:
                for key in fh.keys():
                    fh.get_tensor(key)
        except Exception as err:
            return f"model.safetensors cannot be read ({type(err).__name__})"
    return None


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
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        (tmp / "config.yaml").write_text(config_yaml)
        write_manifest(tmp)
        _fsync_tree(tmp)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        previous = list_checkpoints(root)
        intact = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(
            f"could not write checkpoint step {step} under {root} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            f"the partial copy was removed and {intact}. Free disk space (or fix the error) and continue with --resume"
        ) from None
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


def latest_checkpoint(root: Path, *, verbose: bool = True) -> Path | None:
    """The newest complete checkpoint that passes `check_checkpoint`; damaged newer ones are
    skipped (reported on stderr). Leftover temporary folders of killed writes are removed."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-step-"):
                shutil.rmtree(p, ignore_errors=True)
    for candidate in reversed(list_checkpoints(root)):
        reason = check_checkpoint(candidate)
        if reason is None:
            return candidate
        if verbose:
            print(f"skipping checkpoint {candidate}: {reason}", file=sys.stderr)
    return None


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint folder (`step-NNNNNNNN`) was written at."""
    return int(STEP_DIR.match(checkpoint.name).group(1))


def load_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / STATE_FILE, weights_only=False)
