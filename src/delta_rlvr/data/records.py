"""Typed records the data layer hands to the trainer and the evaluator.

A prompt is either a plain question or a chat (a tuple of role/content pairs); the gold answer
is always a bare string already in the form the verifier compares (`18`, `\\frac{14}{3}`), so
gold-format parsing happens once, at load time, where an error can name the file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PromptRecord:
    """One problem: `question` or `messages` (exactly one), a bare `gold` answer, provenance."""

    id: str
    gold: str
    source: str
    question: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    alternatives: tuple[str, ...] = ()
    """Further gold answers, any of which is also correct (a "list" answer field)."""

    @property
    def golds(self) -> str | tuple[str, ...]:
        """What the verifier gets: the gold, or a tuple of golds meaning any of them."""
        return (self.gold, *self.alternatives) if self.alternatives else self.gold

    def __post_init__(self) -> None:
        if (self.question is None) == (self.messages is None):
            raise ValueError(f"PromptRecord {self.id!r}: set exactly one of question= or messages=")
        if self.question is not None and not self.question.strip():
            raise ValueError(f"PromptRecord {self.id!r}: question is empty")
        if self.messages is not None:
            for index, message in enumerate(self.messages):
                if len(message) != 2 or message[0] not in _ROLES or not isinstance(message[1], str):
                    raise ValueError(
                        f"PromptRecord {self.id!r}: messages[{index}] must be (role, text) with role in {_ROLES}"
                    )
        if not isinstance(self.gold, str) or not self.gold.strip():
            raise ValueError(f"PromptRecord {self.id!r}: gold must be a non-empty string, got {self.gold!r}")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "alternatives", tuple(a for a in self.alternatives if isinstance(a, str) and a.strip()))

    def chat(self) -> list[dict[str, str]]:
        """The prompt as chat messages (a question becomes one user turn)."""
        if self.messages is not None:
            return [{"role": role, "content": text} for role, text in self.messages]
        return [{"role": "user", "content": self.question or ""}]


@dataclass(frozen=True)
class SkippedRow:
    line: int
    field: str | None
    message: str


@dataclass(frozen=True)
class LoadSummary:
    """What a loader read, kept and skipped; skipped rows are never silent."""

    source: str
    rows_read: int
    rows_loaded: int
    skipped: tuple[SkippedRow, ...] = ()

    @property
    def rows_skipped(self) -> int:
        return len(self.skipped)
