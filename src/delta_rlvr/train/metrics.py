"""Metric sinks: metrics.jsonl (one JSON object per step) and TensorBoard event files."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _clean(value: float) -> float | None:
    """JSON has no NaN: undefined statistics (e.g. no signed tokens) are written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsWriter:
    def __init__(self, output_dir: Path, *, tensorboard: bool, resume_step: int = 0) -> None:
        self.path = output_dir / "metrics.jsonl"
        if self.path.exists():
            # On resume, drop the lines written after the checkpoint we restart from, so the
            # file reads as one uninterrupted run.
            kept = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(output_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _clean(float(v)) for k, v in metrics.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if value is not None and math.isfinite(float(value)):
                    self._tb.add_scalar(key, float(value), step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
