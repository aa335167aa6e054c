"""One data-file contract for training and evaluation: JSON lines, a JSON array or Parquet;
question and answer fields by dotted path; answer formats plain, boxed, hashes, list, choice;
bad rows stop with file:line:field and what to do, or are skipped and counted."""

import json

import pytest

from delta_rlvr.data import DataError, FieldMap, field_map, load_file


def test_dotted_paths_reach_nested_fields_and_list_items(tmp_path):
    path = tmp_path / "verl.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": "6+20?"}], "reward_model": {"ground_truth": 26}}) + "\n")
    (record,), _ = load_file(path, field_map("prompt.0.content", "reward_model.ground_truth"))
    assert (record.question, record.gold) == ("6+20?", "26")


def test_a_json_array_file_loads_and_errors_name_the_line_an_item_starts_on(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"question": "1+1?", "answer": "2"},\n  {"question": "2+2?",\n   "answer": ""}\n]\n')
    with pytest.raises(DataError) as caught:
        load_file(path, field_map())
    assert (caught.value.line, caught.value.field) == (3, "answer")
    assert "is empty" in str(caught.value) and "--skip-bad-rows" in str(caught.value)
    records, summary = load_file(path, field_map(), skip_bad_rows=True)
    assert [r.gold for r in records] == ["2"] and (summary.rows_read, summary.rows_skipped) == (2, 1)


@pytest.mark.parametrize(
    ("fmt", "value", "gold", "alternatives"),
    [
        ("plain", "\\frac{1}{2}", "\\frac{1}{2}", ()),
        ("boxed", "so $x = \\boxed{7}$.", "7", ()),
        ("hashes", "3 + 4 = 7\n#### 7", "7", ()),
        ("list", ["1/2", 0.5, "1/2"], "1/2", ("0.5",)),
        ("choice", "(D) Alina", "(D) Alina", ()),
    ],
)
def test_each_answer_format_yields_the_bare_gold(tmp_path, fmt, value, gold, alternatives):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": value}) + "\n")
    (record,), _ = load_file(path, field_map(gold_format=fmt))
    assert (record.gold, record.alternatives) == (gold, alternatives)
    assert record.golds == (gold if not alternatives else (gold, *alternatives))


def test_a_list_answer_without_the_list_format_says_which_format_to_use(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": ["3", "4"]}) + "\n")
    with pytest.raises(DataError, match="answer format to list"):
        load_file(path, field_map())


def test_a_choice_gold_must_be_a_letter_and_an_unknown_format_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "forty"}) + "\n")
    with pytest.raises(DataError, match="multiple-choice letter"):
        load_file(path, field_map(gold_format="choice"))
    with pytest.raises(DataError, match="not an answer format"):
        field_map(gold_format="latex")


def test_a_missing_field_names_the_option_that_sets_it(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"problem": "q", "answer": "1"}) + "\n")
    with pytest.raises(DataError, match="--question-field") as caught:
        load_file(path, FieldMap())
    assert str(caught.value).startswith(f"{path}:1 field 'question'")


def test_every_shipped_benchmark_file_loads_with_its_spec(shared_data):
    from delta_rlvr.data import BUILTIN_DATASETS

    counts = {name: len(load_file(shared_data / spec.data_file, spec.fields, source=name)[0])
              for name, spec in BUILTIN_DATASETS.items() if name != "deepmath"}
    assert counts == {"gsm8k": 1319, "math500": 500, "aime24": 30, "amc23": 40, "aime25": 30, "aime26": 30, "hmmt25feb": 30,
                      "hmmt25nov": 30, "hmmt26feb": 33, "brumo25": 30, "smt25": 53, "cmimc25": 40, "apex25": 12}
