"""`delta-rlvr eval` on the shipped tiny model: resumption, exact report recomputation, real files."""

import json
import math
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import pytest

from delta_rlvr.cli import main
from delta_rlvr.evaluation import EvalConfig, SamplingSettings, evaluate, read_report
from delta_rlvr.evaluation.dump import read_dump
from delta_rlvr.train import ConfigError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

SAMPLING = SamplingSettings(k=4, temperature=1.0, top_p=1.0, max_new_tokens=40)


def config(out, **kw):
    base = dict(benchmarks=("arithmetic:eval_size=12",), output_dir=str(out), sampling=SAMPLING, batch_problems=4, progress=False)
    return EvalConfig(**{**base, **kw})


def lines(path):
    return path.read_text().splitlines()


def test_an_interrupted_evaluation_resumes_to_the_uninterrupted_dump(tmp_path):
    full = tmp_path / "full"
    evaluate(config(full))
    reference = lines(full / "samples.jsonl")
    assert len(reference) == 12 * 4

    # A kill leaves whole batches plus a torn line: keep 5 problems (the 6th cut mid-row).
    part = tmp_path / "part"
    part.mkdir()
    (part / "samples.jsonl").write_text("\n".join(reference[:22]) + "\n" + reference[22][:30])
    (part / "eval_settings.json").write_text((full / "eval_settings.json").read_text())
    evaluate(config(part))
    rows = read_dump(part / "samples.jsonl")
    keys = [(r.problem_id, r.sample) for r in rows]
    assert len(keys) == len(set(keys)) == 48, "every (problem, sample) exactly once"
    resumed = lines(part / "samples.jsonl")
    assert resumed[:20] == reference[:20], "complete problems 0-4 kept as they were; torn problem 5 dropped"
    assert [json.loads(x)["problem_index"] for x in resumed[20:32]] == [5] * 4 + [6] * 4 + [7] * 4
    # Batches are fixed windows of 4 positions seeded by their first position: window 8-11 was
    # not started before the kill, so it is sampled exactly as in the uninterrupted run.
    assert resumed[32:] == reference[32:]
    assert read_report(part).average.problems == 12


def test_a_longer_limit_extends_the_dump_with_the_samples_of_an_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    evaluate(config(full))
    grown = tmp_path / "grown"
    evaluate(config(grown, limit=4))
    assert len(lines(grown / "samples.jsonl")) == 16
    evaluate(config(grown))
    assert lines(grown / "samples.jsonl") == lines(full / "samples.jsonl")


def _by_hand(rows, k):
    """avg@k and unbiased pass@j recomputed with plain counting over all j-subsets."""
    by_problem = defaultdict(list)
    for r in rows:
        by_problem[(r["benchmark"], r["problem_id"])].append(r["correct"])
    per_bench = defaultdict(list)
    for (bench, _), flags in by_problem.items():
        assert len(flags) == k
        per_bench[bench].append(flags)
    out = {}
    for bench, problems in per_bench.items():
        avg = sum(sum(f) / k for f in problems) / len(problems)
        passes = {}
        for j in (1, 2, 4):
            passes[j] = sum(
                sum(any(s) for s in combinations(f, j)) / math.comb(k, j) for f in problems
            ) / len(problems)
        out[bench] = (len(problems), avg, passes)
    return out


def test_the_report_recomputed_from_its_dump_agrees_exactly(tmp_path):
    gsm8k = SHARED_DATA / "gsm8k" / "test.jsonl"
    if not gsm8k.is_file():
        pytest.skip(f"{gsm8k} not present (benchmarks live beside the repo in ../shared/data)")
    out = tmp_path / "ev"
    evaluate(config(out, benchmarks=("arithmetic:eval_size=12", f"gsm8k={gsm8k}"), limit=6))
    rows = [json.loads(line) for line in lines(out / "samples.jsonl")]
    assert {r["benchmark"] for r in rows} == {"arithmetic-3x2+", "gsm8k"}
    fields = {"benchmark", "problem_id", "problem_index", "sample", "response", "extracted", "reason", "correct", "gold", "cut"}
    assert all(set(r) == fields for r in rows)
    assert all(isinstance(r["cut"], bool) for r in rows)
    report = read_report(out)
    hand = _by_hand(rows, 4)
    for score in report.benchmarks:
        own = [r for r in rows if r["benchmark"] == score.name]
        assert score.cut == pytest.approx(sum(r["cut"] for r in own) / len(own), abs=1e-15)
        n, avg, passes = hand[score.name]
        assert score.problems == n == 6
        assert score.avg == pytest.approx(avg, abs=1e-15)
        for j, value in passes.items():
            assert score.pass_at[str(j)] == pytest.approx(value, abs=1e-15)
    arith = next(s for s in report.benchmarks if s.name.startswith("arithmetic"))
    assert 0 < arith.avg < 1, "the shipped model solves some but not all of its own task"
    assert report.average.avg == pytest.approx(sum(hand[b][1] * 6 for b in hand) / 12, abs=1e-15)

    # Recomputing the report from the dump (nothing left to sample) writes identical numbers.
    before = (out / "report.json").read_text()
    (out / "report.json").unlink()
    evaluate(config(out, benchmarks=("arithmetic:eval_size=12", f"gsm8k={gsm8k}"), limit=6))
    assert (out / "report.json").read_text() == before


def test_resuming_with_other_sampling_settings_is_refused_and_names_the_fix(tmp_path):
    out = tmp_path / "ev"
    evaluate(config(out, limit=2))
    with pytest.raises(ConfigError, match="k = 4, not 8|k = 4"):
        evaluate(config(out, limit=2, sampling=SamplingSettings(k=8, top_p=1.0, max_new_tokens=40)))
    assert len(lines(out / "samples.jsonl")) == 8, "the refused run left the dump alone"


def test_cli_eval_reads_a_builtin_benchmark_from_the_data_dir(tmp_path, capsys):
    if not (SHARED_DATA / "amc23" / "test.jsonl").is_file():
        pytest.skip("../shared/data/amc23 not present")
    code = main(["eval", "embedded:arith-tiny", "--benchmarks", "amc23", "arithmetic:eval_size=4", "--data-dir", str(SHARED_DATA),
                 "--limit", "2", "--k", "2", "--output-dir", str(tmp_path / "ev")])
    assert code == 0
    text = capsys.readouterr().out
    assert "| amc23 | 2 |" in text and "**weighted average** | 4 |" in text
    assert main(["eval", "embedded:arith-tiny", "--benchmarks", "gsm9k", "--output-dir", str(tmp_path / "x")]) == 2
