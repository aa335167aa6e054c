"""Where the benchmark files the evaluation tests read live (never copied into the repo)."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
