"""Loaders map fields, and bad input names the file, line and field, or is skipped and counted."""

import json

import pytest

from delta_rlvr.data import DataError, FieldMap, load_file, load_jsonl, load_parquet


def write_jsonl(path, rows, *, raw_tail: str = ""):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + raw_tail, encoding="utf-8")
    return path


def test_rows_become_records_through_the_field_map(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "1+1?", "sol": "#### 2", "uid": 7, "level": 3}])
    records, summary = load_jsonl(path, FieldMap(question="problem", answer="sol", gold_format="hashes", id="uid", metadata=("level",)))
    (record,) = records
    assert (record.id, record.question, record.gold, record.source, dict(record.metadata)) == ("7", "1+1?", "2", "d", {"level": 3})
    assert (summary.rows_read, summary.rows_loaded, summary.rows_skipped) == (1, 1, 0)


def test_chat_rows_use_the_messages_field(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": chat, "answer": "4"}])
    (record,), _ = load_jsonl(path, FieldMap(messages="messages"))
    assert record.question is None and record.chat() == chat


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"answer": "1"}, "question", "missing"),
        ({"question": "q"}, "answer", "missing"),
        ({"question": "q", "answer": 5}, "answer", "must be a string"),
        ({"question": "  ", "answer": "1"}, "question", "non-empty"),
        ({"question": "q", "answer": "no hashes here"}, "answer", "no hashes answer"),
    ],
)
def test_a_bad_row_is_an_error_naming_file_line_and_field(tmp_path, row, field, message):
    fields = FieldMap(gold_format="hashes") if "hashes" in message else FieldMap()
    good = {"question": "q", "answer": "#### 1" if "hashes" in message else "1"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError, match=message) as caught:
        load_jsonl(path, fields)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), 2, field)
    assert f"bad.jsonl:2 field {field!r}" in str(caught.value)


def test_wrong_field_names_list_the_fields_the_row_has(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "q", "solution": "1"}])
    with pytest.raises(DataError, match=r"field 'question'.*\['problem', 'solution'\]"):
        load_jsonl(path)


def test_skip_option_skips_and_counts_bad_rows(tmp_path):
    rows = [{"question": "a", "answer": "1"}, {"question": "b"}, {"question": "c", "answer": 3}, {"question": "d", "answer": "4"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    records, summary = load_jsonl(path, skip_bad_rows=True)
    assert [r.question for r in records] == ["a", "d"]
    assert (summary.rows_read, summary.rows_loaded, summary.rows_skipped) == (4, 2, 2)
    assert [(s.line, s.field) for s in summary.skipped] == [(2, "answer"), (3, "answer")]


def test_numeric_golds_need_an_explicit_opt_in(tmp_path):
    path = write_jsonl(tmp_path / "amc.jsonl", [{"question": "q", "answer": 27.0}, {"question": "r", "answer": 2.5}])
    with pytest.raises(DataError, match="numeric_answers=True"):
        load_jsonl(path)
    records, _ = load_jsonl(path, FieldMap(numeric_answers=True))
    assert [r.gold for r in records] == ["27", "2.5"]


def test_empty_file_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_jsonl(path, skip_bad_rows=True)


def test_truncated_file_names_the_last_line(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"question": "a", "answer": "1"}], raw_tail='{"question": "b", "ans')
    with pytest.raises(DataError, match="truncated") as caught:
        load_jsonl(path)
    assert caught.value.line == 2
    _, summary = load_jsonl(path, skip_bad_rows=True)
    assert summary.rows_skipped == 1


def test_a_file_where_every_row_is_bad_is_an_error_even_when_skipping(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "a", "a": "1"}, {"q": "b", "a": "2"}])
    with pytest.raises(DataError, match="every one of 2 rows"):
        load_jsonl(path, skip_bad_rows=True)


def test_parquet_files_load_with_row_numbers_in_errors(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="the Parquet loader needs the optional extra delta-rlvr[parquet]")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"question": ["a", "b"], "answer": ["1", None]}), path)
    with pytest.raises(DataError) as caught:
        load_parquet(path)
    assert (caught.value.line, caught.value.field) == (2, "answer")
    records, summary = load_file(path, skip_bad_rows=True)
    assert [r.gold for r in records] == ["1"] and summary.rows_skipped == 1


def test_unknown_suffix_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,answer\n")
    with pytest.raises(DataError, match="suffix"):
        load_file(path)
