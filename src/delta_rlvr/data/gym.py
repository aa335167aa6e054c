"""Any reasoning-gym dataset by name, scored with that dataset's own scorer.

reasoning-gym is an optional extra (`pip install 'delta-rlvr[gym]'`): it pins a dozen
packages, matplotlib among them, which a trainer that never uses it should not carry. The
import happens when a task is built, with an error that says what to install.

Why a task object and not only records: a reasoning-gym scorer needs the generator's full entry
(`score_answer(answer, entry)`), so the task keeps the dataset and maps each record back to its
entry by index (stored in the record's metadata).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from delta_rlvr.data.records import PromptRecord
from delta_rlvr.verifiers.extract import AnswerFormat, extract_answer


class ReasoningGymTask:
    """`size` problems of reasoning-gym dataset `name` (seeded), with its scorer."""

    def __init__(self, name: str, *, size: int, seed: int = 0, answer_format: AnswerFormat = "answer_tag", **config: Any):
        try:
            import reasoning_gym
        except ImportError:
            raise ImportError(
                f"reasoning-gym task {name!r} needs the optional extra: pip install 'delta-rlvr[gym]'"
            ) from None
        if size < 1:
            raise ValueError(f"size={size} must be >= 1")
        try:
            self.dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **config)
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"reasoning-gym could not build {name!r} with {config}: {error}") from None
        self.name = name
        self.answer_format = answer_format
        self.records = [self._record(index) for index in range(size)]

    def _record(self, index: int) -> PromptRecord:
        entry = self.dataset[index]
        return PromptRecord(
            id=f"{self.name}-{index}",
            gold=str(entry["answer"]),
            source=f"reasoning_gym/{self.name}",
            question=entry["question"],
            metadata={"entry_index": index},
        )

    def score(self, completions: Sequence[str], records: Sequence[PromptRecord]) -> list[float]:
        """reasoning-gym's score for each completion's extracted answer (0.0 when none)."""
        if len(completions) != len(records):
            raise ValueError(f"{len(completions)} completions but {len(records)} records")
        scores = []
        for completion, record in zip(completions, records):
            answer = extract_answer(completion, self.answer_format) if isinstance(completion, str) else None
            if answer is None:
                scores.append(0.0)
                continue
            entry = self.dataset[int(record.metadata["entry_index"])]
            try:
                scores.append(float(self.dataset.score_answer(answer=answer, entry=entry)))
            except Exception:  # noqa: BLE001 - a third-party scorer must not crash training
                scores.append(0.0)
        return scores
