"""What an evaluation runs on: a named list of problems plus a scorer that also says why.

A `Benchmark` is resolved from a string spec:
- "gsm8k", "math500", "aime24", "amc23": built-in specs; read from `<data_dir>/<name>/test.jsonl`
  when a data folder is given, else from the Hugging Face hub.
- "NAME=PATH": a built-in spec's fields and answer format, read from PATH (JSON lines/Parquet).
- "PATH": any JSON-lines/Parquet file with `question` and `answer` fields, scored with the
  "auto" extractor (boxed, then ####, then Answer:).
- "arithmetic" or "arithmetic:terms=4,digits=2,eval_size=100": the built-in arithmetic task's
  held-out set (the same problems `delta-rlvr train` evaluates on, for the same settings).
A training task becomes a benchmark with `task_benchmark` (what `compare` evaluates on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from delta_rlvr.data import (
    BUILTIN_DATASETS,
    FieldMap,
    PromptRecord,
    extract_arithmetic_answer,
    load_dataset_spec,
    load_file,
    score_arithmetic,
)
from delta_rlvr.train.config import ConfigError, TaskConfig, build


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer on one response."""

    correct: bool
    reason: str
    """"correct", "wrong", "unparsed" (no answer found), or the math verifier's other reasons
    ("gold_unparsed", "timeout")."""
    extracted: str | None


Scorer = Callable[[list[str], list[PromptRecord]], list[Verdict]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    records: tuple[PromptRecord, ...]
    answer_format: str
    """What the prompt asks for (template instruction) and what the verifier extracts."""
    scorer: Scorer

    def __post_init__(self) -> None:
        if not self.records:
            raise ConfigError(f"benchmark {self.name!r} has no problems; check its file or --limit")
        ids = [r.id for r in self.records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ConfigError(f"benchmark {self.name!r} has duplicate problem id {dup!r}; ids key the resumable dump")

    def limited(self, limit: int | None) -> Benchmark:
        """The first `limit` problems (all when None)."""
        if limit is None:
            return self
        return Benchmark(self.name, self.records[:limit], self.answer_format, self.scorer)


def score_arithmetic_verdicts(responses: list[str], records: list[PromptRecord]) -> list[Verdict]:
    """The arithmetic task's own checker (`score_arithmetic`), with the extracted answer kept."""
    scores = score_arithmetic(responses, [r.gold for r in records])
    out = []
    for text, score in zip(responses, scores):
        extracted = extract_arithmetic_answer(text)
        reason = "correct" if score == 1.0 else "unparsed" if extracted is None else "wrong"
        out.append(Verdict(score == 1.0, reason, extracted))
    return out


def math_scorer(answer_format: str) -> Scorer:
    """score_math (math-verify in the verifier pool) with `answer_format`'s extractor."""

    def score(responses: list[str], records: list[PromptRecord]) -> list[Verdict]:
        from delta_rlvr.verifiers import score_math

        results = score_math(responses, [r.gold for r in records], answer_format=answer_format)
        return [Verdict(r.score == 1.0, r.reason, r.extracted) for r in results]

    return score


def opaque_scorer(score: Callable[[list[str], list[PromptRecord]], list[float]]) -> Scorer:
    """For tasks whose scorer returns only a reward (reasoning-gym): no extracted answer."""

    def wrapped(responses: list[str], records: list[PromptRecord]) -> list[Verdict]:
        return [Verdict(s >= 1.0, "correct" if s >= 1.0 else "wrong", None) for s in score(responses, records)]

    return wrapped


def task_benchmark(task, task_cfg: TaskConfig) -> Benchmark:
    """A training task's held-out set as a benchmark, scored by the task's own verifier."""
    if task_cfg.kind == "arithmetic":
        scorer = score_arithmetic_verdicts
    elif task_cfg.kind == "dataset":
        scorer = math_scorer(task.answer_hint)
    else:
        scorer = opaque_scorer(task.score)
    return Benchmark(task.name, tuple(task.eval_records()), getattr(task, "answer_hint", "boxed"), scorer)


def _arithmetic(options: str) -> Benchmark:
    from delta_rlvr.train.config import parse_override
    from delta_rlvr.train.tasks import ArithmeticTask

    fields = {"kind": "arithmetic"}
    for item in filter(None, options.split(",")):
        key, value = parse_override(item)
        fields[key] = value
    cfg = build(TaskConfig, fields, "arithmetic")
    return task_benchmark(ArithmeticTask(cfg), cfg)


def _default_name(path: Path) -> str:
    return path.parent.name if path.stem in ("test", "train", "validation", "dev") else path.stem


def resolve_benchmark(spec: str, data_dir: str | Path | None = None) -> Benchmark:
    """A benchmark from its string spec (see the module docstring)."""
    name, _, options = spec.partition(":")
    if name == "arithmetic":
        return _arithmetic(options)
    if "=" in spec and spec.split("=", 1)[0] in BUILTIN_DATASETS:
        name, path = spec.split("=", 1)
        records, _ = load_dataset_spec(name, path=path)
        fmt = BUILTIN_DATASETS[name].answer_format
        return Benchmark(name, tuple(records), fmt, math_scorer(fmt))
    if spec in BUILTIN_DATASETS:
        path = None
        if data_dir is not None:
            path = Path(data_dir) / spec / "test.jsonl"
            if not path.is_file():
                raise ConfigError(
                    f"benchmark {spec!r}: {path} does not exist; put the file there, pass {spec}=PATH, "
                    "or drop --data-dir to read the hub"
                )
        records, _ = load_dataset_spec(spec, path=path)
        fmt = BUILTIN_DATASETS[spec].answer_format
        return Benchmark(spec, tuple(records), fmt, math_scorer(fmt))
    path = Path(spec)
    if path.is_file():
        records, _ = load_file(path, FieldMap(), source=_default_name(path))
        return Benchmark(_default_name(path), tuple(records), "auto", math_scorer("auto"))
    raise ConfigError(
        f"benchmark {spec!r} is neither a built-in name ({sorted(BUILTIN_DATASETS)} or 'arithmetic'), "
        "NAME=PATH for a built-in spec read from a file, nor an existing .jsonl/.parquet file"
    )
