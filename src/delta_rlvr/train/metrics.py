"""Metric sinks: metrics.jsonl (one JSON object per step) and TensorBoard event files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def _clean(value: float) -> float | None:
    """JSON has no NaN: undefined statistics (e.g. no signed tokens) are written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsWriter:
    def __init__(self, output_dir: Path, *, tensorboard: bool, resume_step: int = 0) -> None:
        self.path = output_dir / "metrics.jsonl"
        if self.path.exists():
            # On resume, drop the lines written after the checkpoint we restart from, so the
            # file reads as one uninterrupted run; a torn line (a run killed mid-write) goes too.
            rows = _parse_lines(self.path, warn=True)
            kept = [json.dumps(r) for r in rows if r.get("step", 0) <= resume_step]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(self.path)
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


def _parse_lines(path: Path, *, warn: bool) -> list[dict]:
    rows = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            if warn:
                print(f"{path}: line {number} is not a complete JSON record (a run killed while writing it?); dropped",
                      file=sys.stderr)
            continue
        rows.append(row)
    return rows


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a torn or damaged line is skipped."""
    return _parse_lines(path, warn=False)
