"""Loaders for JSON lines, JSON arrays, Parquet and Hugging Face datasets, with a field mapping.

The one data-file contract of training and evaluation: a `.jsonl` file (one object per line), a
`.json` file (one JSON array of objects, or JSON lines), or `.parquet`. `FieldMap` names the
question and answer fields - dotted paths reach into nested objects and lists
(`reward_model.ground_truth`, `answers.0`) - and the answer format (`gold_format`): "plain" (the
field is the answer; "raw" is the same), "boxed" (a solution whose `\\boxed{}` is the answer),
"hashes" (GSM8K's `#### 18`), "list" (a list of answers, any of which is correct), "choice" (a
multiple-choice letter, possibly with its option text: `(D) Alina`).
Public benchmark formats need three more things, all in `FieldMap`: a question spread over
several fields (`question_template="{Body} {Question}"`, SVAMP and ASDiv), the options of a
multiple-choice question appended to it (`options="options"`, AQuA, SAT-math, MMLU, gaokao-QA;
see `format_options`), and a gold that is an option's index (`choice_index=0` for MMLU's 0-3,
1 for 1-based files), turned into its letter. A plain gold with a trailing parenthesised unit
(ASDiv's `9 (apples)`) is read as its number. `check_golds_score_themselves` tells whether a
file's golds, written as a model would answer, are what the verifier accepts.

Every loader returns `(records, LoadSummary)`. A bad row (missing question or answer, a
non-string answer where strings are expected, a gold that cannot be extracted, an undecodable
line) raises `DataError` naming the file, the line and the field, unless `skip_bad_rows=True`,
in which case it is skipped and listed in the summary. An empty file, a file whose every row
is bad, or a mapping whose field names match no row is an error in both modes: the most common
cause is a wrong `FieldMap`, and silently training on nothing is worse than stopping.
Optional dependencies (pyarrow, datasets) are imported inside the function that needs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from delta_rlvr.data.records import LoadSummary, PromptRecord, SkippedRow
from delta_rlvr.errors import DataError
from delta_rlvr.verifiers.extract import extract_boxed_answers, extract_hashes, extract_raw

GoldFormat = Literal["raw", "plain", "hashes", "boxed", "list", "choice"]

GOLD_EXTRACTORS = {
    "raw": extract_raw, "plain": extract_raw, "hashes": extract_hashes, "boxed": extract_boxed_answers,
    "list": extract_raw, "choice": extract_raw,
}
GOLD_FORMAT_HELP = ("plain (the field is the answer), boxed (a solution ending in \\boxed{...}), hashes (#### 18), "
                    "list (a list of answers, any of which is correct), choice (a multiple-choice letter)")
_MISSING = object()


def field_value(row: Any, path: str) -> Any:
    """`row` at a dotted path (`reward_model.ground_truth`, `answers.0`); a plain key first."""
    if isinstance(row, dict) and path in row:
        return row[path]
    value = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


@dataclass(frozen=True)
class FieldMap:
    """Which row fields hold what, and how the gold sits in its field.

    question / messages: the prompt field (set `messages` for a chat list of {role, content});
      dotted paths reach nested fields (`prompt.0.content`).
    answer: the gold field (a dotted path: `reward_model.ground_truth`); `gold_format` says how
      to get the bare answer from it: "hashes" for GSM8K solutions ending in `#### 18`, "boxed"
      for MATH solutions, "list" for a list of answers (any of them is correct), "choice" for
      a multiple-choice letter, "plain" (= "raw") when the field is the answer.
    numeric_answers: accept int/float golds (AIME, AMC) and write them as strings (27.0 -> "27").
    id: the id field (default: `<source>-<line>`); metadata: fields copied into metadata.
    """

    question: str = "question"
    answer: str = "answer"
    messages: str | None = None
    gold_format: GoldFormat = "raw"
    numeric_answers: bool = False
    id: str | None = None
    metadata: tuple[str, ...] = ()
    question_template: str = ""
    """A question built from several fields: `{Body} {Question}` (names in braces, dotted paths
    allowed); empty: the `question` field alone."""
    options: str = ""
    """The field holding a multiple-choice question's options, appended to the question
    (`format_options`); empty: none."""
    choice_index: int | None = None
    """The gold is an option's index: 0 (0-based, MMLU) or 1 (1-based); it becomes the letter
    (`2` -> `C` for 0-based). Needs gold_format "choice"."""

    def __post_init__(self) -> None:
        if self.gold_format not in GOLD_EXTRACTORS:
            raise DataError("field map", 0, "gold_format", f"{self.gold_format!r} is not an answer format; use {GOLD_FORMAT_HELP}")
        if self.choice_index not in (None, 0, 1):
            raise DataError("field map", 0, "choice_index", f"{self.choice_index!r} must be 0 (0-based option indices) or 1 (1-based)")
        if self.choice_index is not None and self.gold_format != "choice":
            raise DataError("field map", 0, "choice_index", "an option-index gold is a multiple-choice answer: set the answer format "
                                                            "to choice (--answer-format choice --choice-index 0|1)")
        if self.question_template:
            _template_fields(self.question_template)  # a malformed template fails here, before any row


_SKIP_HINT = " [fix the row, or skip bad rows: --skip-bad-rows / task.skip_bad_rows: true; skipped rows are counted]"


def field_map(question: str = "", answer: str = "", gold_format: str = "", base: FieldMap | None = None, *,
              question_template: str = "", options: str = "", choice_index: int | None = None) -> FieldMap:
    """A FieldMap from user options (CLI flags, config keys): empty ones keep `base`'s value;
    numbers are accepted as golds (`"answer": 26`). An option-index gold implies "choice"."""
    base = base or FieldMap()
    fmt = {"": base.gold_format}.get(gold_format, gold_format)
    if choice_index is not None and not gold_format:
        fmt = "choice"
    if fmt not in GOLD_EXTRACTORS:
        raise DataError("answer format", 0, None, f"{gold_format!r} is not an answer format; use {GOLD_FORMAT_HELP}")
    return FieldMap(question=question or base.question, answer=answer or base.answer, messages=base.messages,
                    gold_format=fmt, numeric_answers=True, id=base.id, metadata=base.metadata,  # type: ignore[arg-type]
                    question_template=question_template or base.question_template, options=options or base.options,
                    choice_index=choice_index if choice_index is not None else base.choice_index)


def _template_fields(template: str) -> list[str]:
    """The field names of a question template (`{Body} {Question}` -> [Body, Question])."""
    import string

    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise DataError("question template", 0, None, f"{template!r} is not a template ({error}); write field names in braces, "
                                                      "for example '{Body} {Question}' (double a literal brace: {{ }})") from None
    if not names or any(not name for name in names):
        raise DataError("question template", 0, None, f"{template!r} names no field; write field names in braces, for example "
                                                      "'{Body} {Question}'")
    return names


_LETTERED = re.compile(r"^\s*\(?([A-Ea-e])\s*[).:]")


def format_options(options: Any, field_name: str) -> tuple[str, int]:
    """A multiple-choice question's options as appended to its question, and how many there are.

    As the benchmarks' papers show them: options already lettered (AQuA's `["A)21", "B)21.5"]`)
    one per line as written; a plain list (MMLU's choices) or a {letter: text} map (gaokao-QA)
    as `A. text` lines; a string (SAT-math's `A) ... B) ...`) as it is."""
    if isinstance(options, str) and options.strip():
        return options.strip(), len(re.findall(r"(?:^|\s)\(?[A-E][).:]", options))
    if isinstance(options, dict) and options:
        items = sorted((str(k).strip(), v) for k, v in options.items())
        if any(len(k) != 1 or not k.isalpha() for k, _ in items):
            raise _BadRow(field_name, f"options map keys must be letters A-E, got {[k for k, _ in items][:6]}")
        return "\n".join(f"{k.upper()}. {_option_text(v)}" for k, v in items), len(items)
    if isinstance(options, (list, tuple)) and options and len(options) <= 26:
        texts = [_option_text(v) for v in options]
        if all(_LETTERED.match(t) for t in texts):
            return "\n".join(texts), len(texts)
        return "\n".join(f"{chr(65 + i)}. {t}" for i, t in enumerate(texts)), len(texts)
    raise _BadRow(field_name, f"options must be a list, a {{letter: text}} map or a string, got {options!r:.60}")


def _option_text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


_PARENTHESISED_UNIT = re.compile(r"^\s*([-+]?\d[\d,]*(?:\.\d+)?)\s*\(\s*[A-Za-z][A-Za-z .'/-]*\)\s*$")


class _BadRow(Exception):
    def __init__(self, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.field_name, self.message = field_name, message


def _index_letter(value: Any, fields: FieldMap, n_options: int | None) -> str:
    """An option-index gold (`2`, `"2"`) as its letter, for 0- or 1-based indices."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text.isdigit():
        raise _BadRow(fields.answer, f"{value!r:.40} is not an option index; with --choice-index the gold is the option's number "
                                     f"({fields.choice_index}-based)")
    index = int(text) - (fields.choice_index or 0)
    limit = n_options if n_options else 5
    if not 0 <= index < min(limit, 26):
        raise _BadRow(fields.answer, f"option index {text} is outside the {limit} options ({fields.choice_index}-based: "
                                     f"{fields.choice_index}..{limit - 1 + (fields.choice_index or 0)}); is --choice-index right?")
    return chr(65 + index)


def _gold_texts(value: Any, fields: FieldMap, n_options: int | None = None) -> tuple[str, ...]:
    """The gold answer(s) of one row: one for every format but "list" (any of several)."""
    if fields.gold_format == "list":
        items = value if isinstance(value, (list, tuple)) else [value]
        golds = []
        for item in items:
            try:
                golds.append(_gold_text(item, FieldMap(answer=fields.answer, numeric_answers=True)))
            except _BadRow:
                continue
        if not golds:
            raise _BadRow(fields.answer, f"no usable answer in the list {value!r:.80}")
        return tuple(dict.fromkeys(golds))
    if isinstance(value, (list, tuple)):
        raise _BadRow(fields.answer, f"holds a list {value!r:.60}; set the answer format to list (any of them is correct) "
                                     "or point the answer field at one item (answers.0)")
    if fields.choice_index is not None:
        return (_index_letter(value, fields, n_options),)
    gold = _gold_text(value, fields)
    if fields.gold_format == "choice":
        from delta_rlvr.verifiers.normalize import choice_letter

        if choice_letter(gold, with_option_text=True) is None:
            raise _BadRow(fields.answer, f"{gold[:60]!r} is not a multiple-choice letter A-E (like 'C' or '(C) text')")
    return (gold,)


def _gold_text(value: Any, fields: FieldMap) -> str:
    if isinstance(value, str):
        text = value
    elif fields.numeric_answers and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(int(value)) if float(value).is_integer() else repr(float(value))
    else:
        hint = " (set FieldMap(numeric_answers=True) for numeric golds)" if isinstance(value, (int, float)) else ""
        if isinstance(value, (list, tuple)):
            hint = " (set the answer format to list: any of them is correct)"
        raise _BadRow(fields.answer, f"answer must be a string, got {type(value).__name__} {value!r:.60}{hint}")
    if not text.strip():
        raise _BadRow(fields.answer, "is empty; fill in the gold answer or drop the row (or skip bad rows: --skip-bad-rows, "
                                     "task.skip_bad_rows: true)")
    gold = GOLD_EXTRACTORS[fields.gold_format](text)
    if gold is not None and fields.gold_format in ("raw", "plain"):
        unit = _PARENTHESISED_UNIT.match(gold)
        if unit:
            gold = unit.group(1)  # ASDiv's `9 (apples)`: the number is the answer
    if gold is None:
        what = "\\boxed{...}" if fields.gold_format == "boxed" else "'#### <answer>'" if fields.gold_format == "hashes" else "answer"
        raise _BadRow(fields.answer, f"no {fields.gold_format} answer ({what}) in {text[-80:]!r}; is the answer format right? "
                                     f"({GOLD_FORMAT_HELP})")
    return gold


def _messages(value: Any, field_name: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _BadRow(field_name, "messages must be a non-empty list of {role, content}")
    try:
        return tuple((str(item["role"]), item["content"]) for item in value)
    except (KeyError, TypeError):
        raise _BadRow(field_name, "each message needs 'role' and 'content' keys") from None


def _templated_question(row: dict, template: str) -> str:
    values = {}
    for name in _template_fields(template):
        value = field_value(row, name)
        if value is _MISSING or value is None:
            raise _BadRow(name, f"missing, and the question template {template!r} needs it; the row has fields {sorted(row)[:12]}")
        values[name] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    import string

    # parts joined by hand (not str.format): a dotted name `{prompt.0}` is a path, not an attribute
    question = "".join(literal + (values[name] if name is not None else "") for literal, name, _, _ in string.Formatter().parse(template))
    if not question.strip():
        raise _BadRow(None, f"question template {template!r} gives an empty question")
    return re.sub(r"[ \t]+", " ", question).strip()


def _record(row: Any, line: int, fields: FieldMap, source: str) -> PromptRecord:
    if not isinstance(row, dict):
        raise _BadRow(None, f"row must be a JSON object, got {type(row).__name__}")
    prompt_field = fields.messages or fields.question
    values = {}
    wanted = [(fields.answer, "answer")]
    if not fields.question_template or fields.messages:
        wanted.insert(0, (prompt_field, "question"))
    for name, option in wanted:
        values[name] = field_value(row, name)
        if values[name] is _MISSING or values[name] is None:
            raise _BadRow(name, f"missing; the row has fields {sorted(row)[:12]} (name the {option} field: FieldMap({option}=...), "
                                f"--{option}-field on the command line, task.{option}_field in a config)")
    question = messages = None
    if fields.messages:
        messages = _messages(values[fields.messages], fields.messages)
    elif fields.question_template:
        question = _templated_question(row, fields.question_template)
    else:
        question = values[fields.question]
        if not isinstance(question, str) or not question.strip():
            raise _BadRow(fields.question, f"question must be a non-empty string, got {question!r:.60}")
    n_options = None
    if fields.options:
        options = field_value(row, fields.options)
        if options is _MISSING or options is None:
            raise _BadRow(fields.options, f"missing; the row has fields {sorted(row)[:12]} (name the options field: --options-field)")
        text, n_options = format_options(options, fields.options)
        if question is not None:
            question = f"{question.rstrip()}\n\n{text}"
    golds = _gold_texts(values[fields.answer], fields, n_options)
    row_id = field_value(row, fields.id) if fields.id else _MISSING
    record_id = str(row_id) if row_id is not _MISSING and row_id is not None else f"{source}-{line}"
    metadata = {name: row[name] for name in fields.metadata if name in row}
    try:
        return PromptRecord(record_id, golds[0], source, question, messages, metadata, golds[1:])
    except ValueError as error:
        raise _BadRow(None, str(error)) from None


def rows_to_records(
    rows: Iterable[tuple[int, Any]], fields: FieldMap, *, path: str, source: str, skip_bad_rows: bool
) -> tuple[list[PromptRecord], LoadSummary]:
    """Validate (line, row) pairs into records; the shared core of every loader."""
    return collect_records(rows, lambda row, line: _record(row, line, fields, source), path=path, skip_bad_rows=skip_bad_rows)


def collect_records(
    rows: Iterable[tuple[int, Any]], make_record: Callable[[Any, int], PromptRecord], *, path: str, skip_bad_rows: bool
) -> tuple[list[PromptRecord], LoadSummary]:
    """(line, row) pairs through `make_record(row, line)`, which raises `_BadRow` for a bad row
    (a row may also be a `_BadRow` already: a line the reader could not decode). A bad row
    raises DataError naming the file, line and field, or is skipped and counted; a file with no
    rows, or only bad ones, is an error either way. Math (`_record`) and code rows share it."""
    records: list[PromptRecord] = []
    skipped: list[SkippedRow] = []
    read = 0
    for line, row in rows:
        read += 1
        try:
            if isinstance(row, _BadRow):
                raise row
            records.append(make_record(row, line))
        except _BadRow as bad:
            if not skip_bad_rows:
                raise DataError(path, line, bad.field_name, bad.message + _SKIP_HINT) from None
            skipped.append(SkippedRow(line, bad.field_name, bad.message))
    if read == 0:
        raise DataError(path, 0, None, "no rows: the file is empty")
    if not records:
        first = skipped[0]
        raise DataError(path, first.line, first.field, f"every one of {read} rows is bad; first: {first.message}")
    return records, LoadSummary(path, read, len(records), tuple(skipped))


def parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, row) of a Parquet file; a damaged file is a DataError naming it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet needs pyarrow: pip install 'delta-rlvr[parquet]'") from None
    if not path.is_file():
        raise DataError(str(path), 0, None, "no such file")
    try:
        table = pq.read_table(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(str(path), 0, None, f"unreadable Parquet ({type(error).__name__}: {error})") from None
    return enumerate(table.to_pylist(), start=1)


def _json_array_rows(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Items of a file holding one JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text):
            raise DataError(str(path), text.count("\n") + 1, None, "the JSON array is never closed (the file looks truncated)")
        if text[position] == "]":
            return
        line = text.count("\n", 0, position) + 1
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise DataError(str(path), error.lineno, None, f"invalid JSON ({error.msg}, column {error.colno})") from None
        yield line, item


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    data = Path(path).read_bytes()
    if data.lstrip()[:1] == b"[":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise DataError(str(path), line, None, "is not UTF-8; save the file as UTF-8 (for example: iconv -f latin1 -t utf-8)") from None
        yield from _json_array_rows(path, text)
        return
    raw = data.splitlines(keepends=True)
    lines = []
    for number, data in enumerate(raw, start=1):
        try:
            lines.append(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise DataError(
                str(path), number, None,
                f"byte 0x{data[error.start]:02x} at column {error.start + 1} is not UTF-8; save the file as UTF-8 "
                "(for example: iconv -f latin1 -t utf-8)",
            ) from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as error:
            truncated = number == len(lines) and not text.endswith("\n")
            hint = " (the file looks truncated)" if truncated else ""
            yield number, _BadRow(None, f"invalid JSON ({error.msg.rstrip(': ')}, column {error.colno}){hint}")


def load_jsonl(
    path: str | Path, fields: FieldMap = FieldMap(), *, source: str | None = None, skip_bad_rows: bool = False
) -> tuple[list[PromptRecord], LoadSummary]:
    """Records from a JSON-lines file (one object per line; blank lines ignored) or a file
    holding one JSON array of objects (`.json`); errors name the line an item starts on."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), 0, None, "no such file")
    if path.stat().st_size == 0:
        raise DataError(str(path), 0, None, "no rows: the file is empty")
    return rows_to_records(_jsonl_rows(path), fields, path=str(path), source=source or path.stem, skip_bad_rows=skip_bad_rows)


def load_parquet(
    path: str | Path, fields: FieldMap = FieldMap(), *, source: str | None = None, skip_bad_rows: bool = False
) -> tuple[list[PromptRecord], LoadSummary]:
    """Records from a Parquet file; "line" in errors is the 1-based row number."""
    path = Path(path)
    rows = parquet_rows(path)
    return rows_to_records(rows, fields, path=str(path), source=source or path.stem, skip_bad_rows=skip_bad_rows)


def load_hub(
    hub_id: str,
    fields: FieldMap,
    *,
    split: str,
    config: str | None = None,
    source: str | None = None,
    skip_bad_rows: bool = False,
) -> tuple[list[PromptRecord], LoadSummary]:
    """Records from a Hugging Face hub dataset; needs `datasets` and a reachable hub."""
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"loading {hub_id!r} from the hub needs the `datasets` package (pip install datasets); "
            "offline, use a local JSON-lines or Parquet copy instead (on the command line: --data-dir DIR holding "
            "<name>/test.jsonl, or NAME=FILE; in a training config: task.dataset_path)"
        ) from None
    try:
        dataset = datasets.load_dataset(hub_id, config, split=split)
    except Exception as error:  # noqa: BLE001 - network, auth and missing-split errors vary
        raise DataError(
            f"hf://{hub_id}", 0, None,
            f"could not load split {split!r} ({type(error).__name__}: {str(error)[:200]}); "
            "offline, use a local JSON-lines or Parquet copy instead (on the command line: --data-dir DIR holding "
            "<name>/test.jsonl, or NAME=FILE; in a training config: task.dataset_path)",
        ) from None  # fmt: skip
    rows = enumerate(dataset, start=1)
    return rows_to_records(rows, fields, path=f"hf://{hub_id}/{split}", source=source or hub_id, skip_bad_rows=skip_bad_rows)


def load_file(
    path: str | Path, fields: FieldMap = FieldMap(), *, source: str | None = None, skip_bad_rows: bool = False
) -> tuple[list[PromptRecord], LoadSummary]:
    """JSON lines or Parquet, chosen by the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return load_parquet(path, fields, source=source, skip_bad_rows=skip_bad_rows)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return load_jsonl(path, fields, source=source, skip_bad_rows=skip_bad_rows)
    raise DataError(str(path), 0, None, f"unknown suffix {suffix!r}; use .jsonl (JSON lines), .json (a JSON array or JSON lines) "
                                        "or .parquet")


SELF_CHECK_WARN_FRACTION = 0.02
"""More than this fraction of a file's golds scoring 0 against themselves is warned about."""


def gold_as_model_answer(gold: str, answer_format: str) -> str:
    """A gold written the way a model answers in `answer_format` (`\\boxed{gold}`, `#### gold`)."""
    if answer_format == "hashes":
        return f"So the answer follows.\n#### {gold}"
    if answer_format == "answer_line":
        return f"So the answer follows.\nAnswer: {gold}"
    if answer_format == "answer_tag":
        return f"So the answer follows. <answer>{gold}</answer>"
    return f"So the final answer is $\\boxed{{{gold}}}$."


def check_golds_score_themselves(
    records: list[PromptRecord], answer_format: str, *, name: str = "", warn_fraction: float = SELF_CHECK_WARN_FRACTION,
    examples: int = 3,
) -> tuple[float, str | None]:
    """Score every record's gold, written as a model would (`gold_as_model_answer`), against
    itself with the math verifier: (fraction that scores 1, a warning or None). The warning,
    given when more than `warn_fraction` fail, names the first failures and their reasons: a
    file whose golds the verifier cannot accept (a unit glued to a number, an option text where
    a letter is expected, a wrong --answer-format) would train or evaluate on noise."""
    from delta_rlvr.verifiers import score_math

    if not records:
        return 1.0, None
    responses = [gold_as_model_answer(r.gold, answer_format) for r in records]
    results = score_math(responses, [r.golds for r in records], answer_format=answer_format)  # type: ignore[arg-type]
    failures = [(r, res) for r, res in zip(records, results) if res.score != 1.0]
    rate = 1 - len(failures) / len(records)
    if len(failures) <= warn_fraction * len(records):
        return rate, None
    shown = "; ".join(f"{r.id}: gold {r.gold[:40]!r} -> {res.reason}" for r, res in failures[:examples])
    return rate, (f"{name or records[0].source}: {len(failures)} of {len(records)} golds ({100 * len(failures) / len(records):.1f}%) "
                  f"score 0 against themselves written as a model would answer (format {answer_format}); e.g. {shown}. "
                  "Check --answer-format, --answer-field and --choice-index, or clean the golds")
