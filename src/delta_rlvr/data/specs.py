"""Built-in dataset specs: where each benchmark lives, its fields, and its answer format.

`answer_format` is the format the *model's response* is asked for and scored in (it selects
the prompt instruction and the verifier's extractor); `FieldMap.gold_format` is how the gold
sits in the dataset. Keeping both in one spec is what makes "chosen per dataset" hold.
Local-file override: `load_dataset_spec(name, path=...)` reads a JSON-lines or Parquet copy
with the same fields (the project's tests read ../shared/data this way); without a path the
hub is used, which needs `datasets` and a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from delta_rlvr.data.loaders import FieldMap, load_file, load_hub
from delta_rlvr.data.records import LoadSummary, PromptRecord
from delta_rlvr.verifiers.extract import ANSWER_EXTRACTORS, AnswerFormat


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's hub location, field mapping, default split and response answer format."""

    name: str
    hub_id: str
    split: str
    fields: FieldMap
    answer_format: AnswerFormat
    hub_config: str | None = None
    note: str = ""
    local_path: str = ""
    """Where the file sits under a data folder (`--data-dir`); default `<name>/test.jsonl`."""

    @property
    def data_file(self) -> str:
        return self.local_path or f"{self.name}/test.jsonl"

    def __post_init__(self) -> None:
        if self.answer_format not in ANSWER_EXTRACTORS:
            raise ValueError(f"DatasetSpec {self.name}: answer_format={self.answer_format!r} is unknown")


BUILTIN_DATASETS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(
        name="gsm8k",
        hub_id="openai/gsm8k",
        hub_config="main",
        split="test",
        fields=FieldMap(question="question", answer="answer", gold_format="hashes"),
        answer_format="hashes",
        note="worked solutions ending '#### <integer>'; responses are asked to end the same way",
    ),
    "math500": DatasetSpec(
        name="math500",
        hub_id="HuggingFaceH4/MATH-500",
        split="test",
        fields=FieldMap(question="problem", answer="answer", id="unique_id", metadata=("subject", "level")),
        answer_format="boxed",
    ),
    "aime24": DatasetSpec(
        name="aime24",
        hub_id="HuggingFaceH4/aime_2024",
        split="train",
        fields=FieldMap(question="problem", answer="answer", id="id", numeric_answers=True, metadata=("url",)),
        answer_format="boxed",
        note="integer answers 0-999; some copies store them as numbers",
    ),
    "amc23": DatasetSpec(
        name="amc23",
        hub_id="math-ai/amc23",
        split="test",
        fields=FieldMap(question="question", answer="answer", id="id", numeric_answers=True, metadata=("url",)),
        answer_format="boxed",
        note="answers stored as floats (27.0) in the Qwen2.5-Math harness copy",
    ),
    "deepmath": DatasetSpec(
        name="deepmath",
        hub_id="zwhe99/DeepMath-103K",
        split="train",
        fields=FieldMap(question="question", answer="final_answer", metadata=("difficulty", "topic")),
        answer_format="boxed",
        note="DeepMath-103K, the DelTA paper's training set",
    ),
}

# MathArena's competition sets (../shared/data/matharena/, hub MathArena/<file stem>): id, problem, answer.
_MATHARENA = {
    "aime25": ("aime_2025", "AIME 2025 I+II, integer answers"),
    "aime26": ("aime_2026", "AIME 2026 I+II, integer answers"),
    "hmmt25feb": ("hmmt_feb_2025", "HMMT February 2025, LaTeX answers"),
    "hmmt25nov": ("hmmt_nov_2025", "HMMT November 2025, LaTeX answers"),
    "hmmt26feb": ("hmmt_feb_2026", "HMMT February 2026, LaTeX answers"),
    "brumo25": ("brumo_2025", "BRUMO 2025, LaTeX answers"),
    "smt25": ("smt_2025", "SMT 2025: integers, LaTeX, lists"),
    "cmimc25": ("cmimc_2025", "CMIMC 2025"),
    "apex25": ("apex_2025", "MathArena Apex 2025"),
}
for _name, (_stem, _note) in _MATHARENA.items():
    BUILTIN_DATASETS[_name] = DatasetSpec(
        name=_name, hub_id=f"MathArena/{_stem}", split="train",
        fields=FieldMap(question="problem", answer="answer", id="id", numeric_answers=True),
        answer_format="boxed", note=_note, local_path=f"matharena/{_stem}.jsonl",
    )  # fmt: skip

# Named suites of benchmarks.
SUITES: dict[str, tuple[str, ...]] = {
    "paper7": ("aime24", "aime25", "aime26", "hmmt25feb", "hmmt25nov", "hmmt26feb", "brumo25"),
}
"""paper7: the DelTA paper's seven (avg@16, temperature 1.0, top-p 0.7; problem-weighted average)."""


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; built-in ones are {sorted(BUILTIN_DATASETS)}") from None


def load_dataset_spec(
    name: str, *, path: str | Path | None = None, split: str | None = None, skip_bad_rows: bool = False
) -> tuple[list[PromptRecord], LoadSummary]:
    """Load a built-in dataset from a local file (`path`) or, without one, from the hub."""
    spec = get_dataset_spec(name)
    if path is not None:
        return load_file(path, spec.fields, source=spec.name, skip_bad_rows=skip_bad_rows)
    return load_hub(
        spec.hub_id, spec.fields, split=split or spec.split, config=spec.hub_config,
        source=spec.name, skip_bad_rows=skip_bad_rows,
    )  # fmt: skip
