"""A new user's JSONL trains as it is: task.dataset=FILE, field names and answer format from the
config, and a held-out size larger than the file is refused with the numbers and the fix."""

import json

import pytest

from delta_rlvr.train.config import ConfigError, TaskConfig
from delta_rlvr.train.tasks import build_task


def _rows(path, n, **extra):
    path.write_text("".join(json.dumps({"question": f"What is {i} + 20?", "answer": str(i + 20), **extra}) + "\n" for i in range(n)))
    return path


def test_task_dataset_may_be_a_file_path(tmp_path):
    task = build_task(TaskConfig(kind="dataset", dataset=str(_rows(tmp_path / "my.jsonl", 20)), eval_size=4))
    records, _ = task.train_records(0, 16)
    assert task.name == "dataset-my" and task.answer_hint == "boxed"
    assert len(task.eval_records()) == 4 and {r.gold for r in task.eval_records()} == {"20", "21", "22", "23"}
    assert len({r.id for r in records}) == 16 and not {r.gold for r in records} & {"20", "21", "22", "23"}
    assert task.score(["so \\boxed{24}", "\\boxed{25}"], [r for r in task._train if r.gold == "24"] * 2) == [1.0, 0.0]


def test_field_map_and_answer_format_come_from_the_config(tmp_path):
    path = tmp_path / "nested.jsonl"
    path.write_text("".join(json.dumps({"q": {"text": f"{i}+1?"}, "sol": f"work\n#### {i + 1}"}) + "\n" for i in range(6)))
    task = build_task(TaskConfig(kind="dataset", dataset=str(path), question_field="q.text", answer_field="sol",
                                 gold_format="hashes", eval_size=2))
    assert [(r.question, r.gold) for r in task.eval_records()] == [("0+1?", "1"), ("1+1?", "2")]


def test_bad_rows_stop_with_file_line_field_or_are_skipped(tmp_path):
    path = _rows(tmp_path / "my.jsonl", 10)
    with path.open("a") as fh:
        fh.write(json.dumps({"question": "blank?", "answer": ""}) + "\n")
    with pytest.raises(ConfigError, match=r"my.jsonl:11 field 'answer': is empty"):
        build_task(TaskConfig(kind="dataset", dataset=str(path), eval_size=2))
    task = build_task(TaskConfig(kind="dataset", dataset=str(path), eval_size=2, skip_bad_rows=True))
    assert len(task._train) == 8


def test_an_eval_size_that_holds_out_every_row_says_why_and_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match=r"task.eval_size = 200 .* it has 20: nothing would be left to train on.*task.eval_size=4"):
        build_task(TaskConfig(kind="dataset", dataset=str(_rows(tmp_path / "my.jsonl", 20))))


def test_an_unknown_dataset_name_is_a_config_error_naming_both_options():
    with pytest.raises(ConfigError, match="neither a built-in dataset .* nor a data file"):
        build_task(TaskConfig(kind="dataset", dataset="mine"))


def test_golds_that_fail_against_themselves_are_warned_about_when_training_loads_the_file(tmp_path, capsys):
    build_task(TaskConfig(kind="dataset", dataset=str(_rows(tmp_path / "clean.jsonl", 20)), eval_size=4))
    assert "warning" not in capsys.readouterr().err
    path = _rows(tmp_path / "cut.jsonl", 16)
    with path.open("a") as fh:  # four golds cut off mid-LaTeX, as a broken export leaves them: no answer can earn their reward
        fh.writelines(json.dumps({"question": f"Half of {i}?", "answer": f"\\frac{{{i}}}{{"}) + "\n" for i in range(4))
    task = build_task(TaskConfig(kind="dataset", dataset=str(path), eval_size=4))
    err = capsys.readouterr().err
    assert "warning: task.dataset cut: 4 of 20 golds (20.0%) score 0 against themselves" in err
    assert "gold '\\\\frac{0}{'" in err and "format boxed" in err and "clean the golds" in err
    assert len(task._train) == 16  # a warning, not a refusal: the run still trains on the file
