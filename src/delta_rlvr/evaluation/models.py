"""Which weights to evaluate: a preset name, a Hugging Face folder, a checkpoint, or a run.

A run folder (one with `checkpoints/`) means its newest complete checkpoint. A checkpoint
written by the trainer carries its `config.yaml`, whose task template, answer format, rollout
length and DelTA settings become the defaults of `eval` and `inspect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from delta_rlvr.errors import ConfigError
from delta_rlvr.train.checkpoint import STEP_DIR, latest_checkpoint
from delta_rlvr.train.config import ModelConfig, TrainConfig, load_config
from delta_rlvr.train.policy import EMBEDDED, embedded_model_dir, load_policy

PRESETS = (*EMBEDDED, "smollm2-135m-instruct")


@dataclass(frozen=True)
class ModelSource:
    spec: str
    """What the user passed."""
    name: str
    """ModelConfig.name: a preset, or the folder the weights are read from."""
    folder: Path | None
    """The weights' folder (None for a preset resolved by load_policy)."""
    run_config: TrainConfig | None
    """The training config saved beside the checkpoint, if any."""
    step: int
    """The checkpoint's training step (0 for anything that is not a trainer checkpoint)."""

    @property
    def is_embedded(self) -> bool:
        return self.name in EMBEDDED or (self.run_config is not None and self.run_config.model.name in EMBEDDED)

    def weights_dir(self) -> Path:
        """A folder holding config.json and the weights (what vLLM needs)."""
        if self.folder is not None:
            return self.folder
        if self.name in EMBEDDED:
            return embedded_model_dir(EMBEDDED[self.name])
        from delta_rlvr.models import smollm2_checkpoint

        return Path(smollm2_checkpoint())

    def load(self, device: str = "auto"):
        """(model, tokenizer, device) through the trainer's loader."""
        return load_policy(ModelConfig(name=self.name, device=device), self.folder)


def resolve_model(spec: str) -> ModelSource:
    if spec in PRESETS:
        return ModelSource(spec, spec, None, None, 0)
    path = Path(spec)
    if not path.is_dir():
        raise ConfigError(
            f"model {spec!r} is neither a preset ({list(PRESETS)}) nor a folder (a Hugging Face model, "
            "a trainer checkpoint, or a run folder with checkpoints/)"
        )
    if (path / "checkpoints").is_dir():
        newest = latest_checkpoint(path / "checkpoints")
        if newest is None:
            raise ConfigError(f"run folder {spec!r} has no complete checkpoint yet; train it (or resume it) first")
        path = newest
    if not (path / "config.json").is_file():
        raise ConfigError(f"model folder {str(path)!r} has no config.json; pass a Hugging Face model folder")
    run_config = load_config(path / "config.yaml") if (path / "config.yaml").is_file() else None
    match = STEP_DIR.match(path.name)
    return ModelSource(spec, str(path), path, run_config, int(match.group(1)) if match else 0)
