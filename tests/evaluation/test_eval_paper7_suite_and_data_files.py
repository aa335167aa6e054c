"""`eval --benchmarks paper7` runs the paper's seven and weights them by problems; benchmark files
follow the data contract; duplicate names are refused before anything is generated; user
mistakes exit 2 with a message, never a traceback."""

import json
from pathlib import Path

import pytest

from delta_rlvr.cli import main
from delta_rlvr.evaluation import EvalConfig, SamplingSettings, evaluate
from delta_rlvr.evaluation.benchmarks import DataOptions, expand_specs, resolve_benchmark
from delta_rlvr.train.config import ConfigError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

PAPER7 = ["aime24", "aime25", "aime26", "hmmt25feb", "hmmt25nov", "hmmt26feb", "brumo25"]
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="benchmark files live in ../shared/data")


def test_paper7_expands_to_the_papers_seven_in_order():
    assert expand_specs(["paper7"]) == PAPER7
    assert expand_specs(["arithmetic", "paper7"])[1:] == PAPER7


@pytest.mark.parametrize("specs", [["paper7", "aime25"], ["gsm8k", "gsm8k"], ["x/test.jsonl", "y/x.jsonl"]])
def test_two_benchmarks_with_one_name_are_refused_before_the_model_is_touched(tmp_path, specs):
    cfg = EvalConfig(model="no-such-model", benchmarks=tuple(specs), output_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="resolve to the name"):
        evaluate(cfg)
    assert not (tmp_path / "out").exists()


@needs_data
def test_paper7_on_the_embedded_model_reports_each_set_and_the_problem_weighted_average(tmp_path):
    cfg = EvalConfig(model="embedded:arith-tiny", benchmarks=("paper7",), output_dir=str(tmp_path), data_dir=str(SHARED_DATA),
                     limit=1, sampling=SamplingSettings(2, 1.0, 0.7, 8), progress=False)
    report = evaluate(cfg)
    assert [b.name for b in report.benchmarks] == PAPER7
    assert report.average.problems == 7 and all(b.problems == 1 and b.k == 2 for b in report.benchmarks)
    assert report.average.avg == pytest.approx(sum(b.avg for b in report.benchmarks) / 7)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 14 and {r["gold"] for r in rows if r["benchmark"] == "brumo25"} == {"2^{99}"}


@needs_data
def test_the_seven_files_resolve_with_their_problem_counts():
    sizes = {name: len(resolve_benchmark(name, SHARED_DATA).records) for name in PAPER7}
    assert sizes == {"aime24": 30, "aime25": 30, "aime26": 30, "hmmt25feb": 30, "hmmt25nov": 30, "hmmt26feb": 33, "brumo25": 30}


def test_a_user_file_with_nested_fields_and_a_list_answer_resolves(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"p": {"text": "1/2 as a decimal?"}, "gt": ["0.5", "1/2"]}, {"p": {"text": "?"}, "gt": []}]))
    options = DataOptions("p.text", "gt", "list", skip_bad_rows=True)
    bench = resolve_benchmark(f"half={path}", options=options)
    assert (bench.name, bench.rows_skipped, bench.records[0].golds, bench.answer_format) == ("half", 1, ("0.5", "1/2"), "auto")
    assert [v.correct for v in bench.scorer(["It is 1/2.", "\\boxed{0.25}"], list(bench.records) * 2)] == [True, False]


def test_a_bad_benchmark_file_exits_2_naming_file_line_field_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n" + json.dumps({"question": "q2"}) + "\n")
    code = main(["eval", "embedded:arith-tiny", "--benchmarks", str(path), "--output-dir", str(tmp_path / "o"), "--k", "2"])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:2 field 'answer': missing" in err and "Traceback" not in err
    code = main(["eval", "embedded:arith-tiny", "--benchmarks", "paper7", "aime24", "--output-dir", str(tmp_path / "o2")])
    assert code == 2 and "resolve to the name 'aime24'" in capsys.readouterr().err
