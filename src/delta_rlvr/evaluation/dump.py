"""The per-sample dump (`samples.jsonl`): one JSON object per sampled response.

It is the evaluation's source of truth: the report is always recomputed from it, and resuming
skips every problem it already holds in full. Rows of one batch of problems are appended in one
write and fsynced, so a killed run leaves whole problems plus at most one torn last line, which
`read_dump` drops; `compact_dump` then removes problems with fewer than k samples.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from delta_rlvr.errors import ConfigError


@dataclass(frozen=True)
class SampleRow:
    benchmark: str
    problem_id: str
    problem_index: int
    """Position of the problem in its benchmark (fixes its sampling seed)."""
    sample: int
    """0 .. k - 1."""
    response: str
    extracted: str | None
    reason: str
    correct: bool
    gold: str
    cut: bool | None = None
    """The response stopped at max_new_tokens (no end-of-sequence); None in dumps written before
    this was recorded."""


def read_dump(path: Path) -> list[SampleRow]:
    """All rows; a torn final line (killed mid-write) is dropped, any other bad line raises."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(SampleRow(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as err:
            if number == len(lines):  # the last line has no newline: a write was cut short
                break
            raise ConfigError(f"{path}:{number} is not a sample row ({err}); delete the line or the whole dump to resample") from None
    return rows


def complete_problems(rows: list[SampleRow], k: int) -> dict[tuple[str, str], list[SampleRow]]:
    """(benchmark, problem id) -> its k rows in sample order, for problems with exactly samples 0..k-1."""
    grouped: dict[tuple[str, str], list[SampleRow]] = defaultdict(list)
    for row in rows:
        grouped[(row.benchmark, row.problem_id)].append(row)
    out = {}
    for key, group in grouped.items():
        group.sort(key=lambda r: r.sample)
        if [r.sample for r in group] == list(range(k)):
            out[key] = group
    return out


def compact_dump(path: Path, k: int) -> dict[tuple[str, str], list[SampleRow]]:
    """Rewrite the dump with complete problems only (atomically); returns them."""
    rows = read_dump(path)
    done = complete_problems(rows, k)
    if sum(len(g) for g in done.values()) != len(rows) or (path.is_file() and not path.read_text().endswith("\n") and rows):
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(asdict(r)) + "\n" for g in done.values() for r in g))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return done


def append_rows(path: Path, rows: list[SampleRow]) -> None:
    """Append rows in one write and fsync them."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(asdict(r)) + "\n" for r in rows))
        fh.flush()
        os.fsync(fh.fileno())
