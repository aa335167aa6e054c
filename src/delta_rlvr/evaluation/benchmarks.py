"""What an evaluation runs on: a named list of problems plus a scorer that also says why.

A `Benchmark` is resolved from a string spec:
- a built-in name (gsm8k, math500, aime24, amc23, aime25, aime26, hmmt25feb, hmmt25nov,
  hmmt26feb, brumo25, smt25, cmimc25, apex25, deepmath): read from `<data_dir>/<its file>`
  (`<name>/test.jsonl`, `matharena/<file>.jsonl`) when a data folder is given, else the hub.
- a suite name: `paper7` = the DelTA paper's seven (aime24 ... brumo25), expanded in place.
- "NAME=PATH": a built-in spec's fields and answer format, read from PATH; any other NAME
  names a user file (`mine=data/my.jsonl`).
- "PATH": any JSON-lines / JSON-array / Parquet file, its fields named by `DataOptions`
  (`--question-field`, `--answer-field`, `--answer-format`; default `question` / `answer` /
  plain), scored with the "auto" extractor (box, ####, Answer:, then math-verify's own), or the
  "choice" extractor for multiple-choice golds.
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
    SUITES,
    DataError,
    FieldMap,
    PromptRecord,
    field_map,
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
    rows_skipped: int = 0
    """Bad rows of its file skipped under --skip-bad-rows (counted in the report)."""

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
        return Benchmark(self.name, self.records[:limit], self.answer_format, self.scorer, self.rows_skipped)


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

        results = score_math(responses, [r.golds for r in records], answer_format=answer_format)
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


@dataclass(frozen=True)
class DataOptions:
    """How to read a user's benchmark file (CLI: --question-field, --answer-field,
    --answer-format, --skip-bad-rows). Empty fields keep a built-in spec's own."""

    question_field: str = ""
    answer_field: str = ""
    answer_format: str = ""
    skip_bad_rows: bool = False


def expand_specs(specs: list[str] | tuple[str, ...]) -> list[str]:
    """Suites (`paper7`) replaced by their benchmarks; a name given twice is refused here,
    before any model is loaded or any sample drawn."""
    out: list[str] = []
    for spec in specs:
        out.extend(SUITES.get(spec, (spec,)))
    names = [benchmark_name(spec) for spec in out]
    for name in names:
        if names.count(name) > 1:
            given = [spec for spec, n in zip(out, names) if n == name]
            raise ConfigError(
                f"benchmarks {given} all resolve to the name {name!r}; each benchmark needs its own name (the dump is keyed "
                f"by it): drop the repeat, or name a file NAME=FILE (for example {name}2={given[-1].split('=')[-1]})"
            )
    return out


def benchmark_name(spec: str) -> str:
    """The name a spec's benchmark gets (what the dump and the report call it)."""
    name, _, options = spec.partition(":")
    if name == "arithmetic":
        return "arithmetic" if not options else f"arithmetic:{options}"
    if spec in BUILTIN_DATASETS:
        return spec
    if "=" in spec:
        return spec.split("=", 1)[0]
    return _default_name(Path(spec))


def _load(load, what: str):
    try:
        return load()
    except DataError:
        raise
    except (ValueError, ImportError, OSError) as err:  # a missing extra, an unreadable file
        raise ConfigError(f"benchmark {what!r}: {err}") from None


def _from_file(name: str, path: Path, options: DataOptions, base: FieldMap | None = None, fmt: str | None = None) -> Benchmark:
    fields = field_map(options.question_field, options.answer_field, options.answer_format, base)
    records, summary = _load(lambda: load_file(path, fields, source=name, skip_bad_rows=options.skip_bad_rows), str(path))
    if summary.rows_skipped:
        import sys

        first = summary.skipped[0]
        print(f"benchmark {name}: skipped {summary.rows_skipped} of {summary.rows_read} rows of {path} (first: line {first.line}"
              f"{' field ' + repr(first.field) if first.field else ''}: {first.message})", file=sys.stderr)
    fmt = fmt or ("choice" if fields.gold_format == "choice" else "auto")
    return Benchmark(name, tuple(records), fmt, math_scorer(fmt), summary.rows_skipped)


def resolve_benchmark(spec: str, data_dir: str | Path | None = None, options: DataOptions | None = None) -> Benchmark:
    """A benchmark from its string spec (see the module docstring)."""
    options = options or DataOptions()
    name, _, arith_options = spec.partition(":")
    if name == "arithmetic":
        return _arithmetic(arith_options)
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name or not path:
            raise ConfigError(f"benchmark {spec!r}: write NAME=FILE, for example mine=data/my.jsonl")
        if name in BUILTIN_DATASETS:
            builtin = BUILTIN_DATASETS[name]
            return _from_file(name, Path(path), options, builtin.fields, builtin.answer_format)
        return _from_file(name, Path(path), options)
    if spec in BUILTIN_DATASETS:
        builtin = BUILTIN_DATASETS[spec]
        if data_dir is not None:
            path = Path(data_dir) / builtin.data_file
            if not path.is_file():
                raise ConfigError(
                    f"benchmark {spec!r}: {path} does not exist; put the file there, pass {spec}=PATH, "
                    "or drop --data-dir to read the hub"
                )
            return _from_file(spec, path, options, builtin.fields, builtin.answer_format)
        records, summary = _load(lambda: load_dataset_spec(spec, skip_bad_rows=options.skip_bad_rows), spec)
        return Benchmark(spec, tuple(records), builtin.answer_format, math_scorer(builtin.answer_format), summary.rows_skipped)
    path = Path(spec)
    if path.is_file():
        return _from_file(_default_name(path), path, options)
    raise ConfigError(
        f"benchmark {spec!r} is neither a built-in name ({sorted(BUILTIN_DATASETS)}, 'arithmetic'), a suite "
        f"({sorted(SUITES)}), NAME=PATH, nor an existing .jsonl/.json/.parquet file"
    )
