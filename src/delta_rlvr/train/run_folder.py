"""A run folder belongs to one run: ownership, the lock, and what `--resume` may change.

- A folder that already holds a run (metrics, checkpoints or a config) is never trained into
  afresh: without `--resume` the trainer refuses, naming `--resume` and `--overwrite`.
  `--overwrite` deletes the run's files (and only those) first.
- `<run>/.lock` is held (fcntl, exclusive, non-blocking) for as long as a trainer runs, so a
  second concurrent run in the same folder is refused instead of interleaving its metrics.
- `--resume` continues the run as it was configured: the folder's `config.yaml` is the base,
  and only the `SAFE_ON_RESUME` fields (how long, how often, how it is displayed) may change.
  Every other difference (task, model, method, seed, ...) is refused with the differences
  listed. Allowed changes are appended to `config_history.jsonl`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from delta_rlvr.errors import ConfigError
from delta_rlvr.train.config import TrainConfig

#: what a run writes into its folder (and --overwrite deletes)
RUN_FILES = ("metrics.jsonl", "config.yaml", "config_history.jsonl", "curves.png", "tokens.html")
RUN_DIRS = ("checkpoints", "tensorboard")
LOCK_FILE = ".lock"
HISTORY_FILE = "config_history.jsonl"

#: fields `--resume` may change: they do not change what the run computes at a given step
SAFE_ON_RESUME = (
    "run.max_steps", "run.eval_every", "run.eval_samples", "run.save_every", "run.keep_last",
    "run.tensorboard", "run.progress", "run.threads", "run.output_dir",
)


def holds_run(folder: Path) -> bool:
    """True when ``folder`` has a run's metrics, checkpoints or config in it."""
    return any((folder / name).exists() for name in ("metrics.jsonl", "config.yaml", "checkpoints"))


def describe_run(folder: Path) -> str:
    """A short description of the run in ``folder``: its method, seed and last step."""
    parts = []
    config = folder / "config.yaml"
    if config.is_file():
        import yaml

        try:
            tree = yaml.safe_load(config.read_text()) or {}
            parts.append(f"method {tree.get('algorithm', {}).get('method', '?')}, seed {tree.get('run', {}).get('seed', '?')}")
        except Exception:  # a damaged config still names the folder as a run
            parts.append("an unreadable config.yaml")
    ckpts = sorted((folder / "checkpoints").glob("step-*")) if (folder / "checkpoints").is_dir() else []
    if ckpts:
        parts.append(f"{len(ckpts)} checkpoint(s), newest {ckpts[-1].name}")
    return ", ".join(parts) or "run files"


def prepare_folder(folder: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an old one; delete it first with ``overwrite``."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in the folder, "
                          "--overwrite deletes it; give one")
    if resume:
        if not holds_run(folder):
            raise ConfigError(
                f"--resume: {folder} holds no run (no config.yaml, metrics.jsonl or checkpoints/); check the folder "
                "name, or drop --resume to start a new run there"
            )
        return
    if not holds_run(folder):
        return
    if not overwrite:
        raise ConfigError(
            f"{folder} already holds a run ({describe_run(folder)}). Continue it with --resume, start it over with "
            "--overwrite (deletes its metrics and checkpoints), or choose another --output-dir"
        )
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    for name in RUN_DIRS:
        shutil.rmtree(folder / name, ignore_errors=True)


@contextlib.contextmanager
def hold_lock(folder: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold ``<folder>/.lock`` exclusively (recording this pid in it). Yields True once held;
    with ``wait=False`` yields False at once if another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield True
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's lock for one training run, or refuse at once naming its holder."""
    with hold_lock(folder, wait=False) as held:
        if not held:
            owner = (folder / LOCK_FILE).read_text().strip() or "another process"
            raise ConfigError(
                f"{folder} is in use by a run that is training now ({owner}); wait for it to finish, or use another "
                "--output-dir"
            )
        yield


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, path + "."))
        else:
            out[path] = value
    return out


def resume_changes(saved: TrainConfig, asked: TrainConfig) -> dict[str, tuple[object, object]]:
    """{field: (saved, asked)} for every field that differs; raises on an unsafe change."""
    old, new = _flat(saved.to_dict()), _flat(asked.to_dict())
    diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    unsafe = {k: v for k, v in diff.items() if k not in SAFE_ON_RESUME}
    if unsafe:
        lines = "; ".join(f"{k}: {a!r} in the run, {b!r} asked" for k, (a, b) in unsafe.items())
        raise ConfigError(
            f"--resume continues the run as it was configured, but this command changes what it trains ({lines}). "
            f"Drop those flags to continue the run, or train a new run in another --output-dir. Allowed on resume: "
            f"{', '.join(SAFE_ON_RESUME)}"
        )
    return diff


def record_changes(folder: Path, step: int, changes: dict[str, tuple[object, object]]) -> None:
    """Append the allowed changes of a resume to ``config_history.jsonl``."""
    if not changes:
        return
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed_at_step": step,
             "changes": {k: {"from": a, "to": b} for k, (a, b) in changes.items()}}
    with open(folder / HISTORY_FILE, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
