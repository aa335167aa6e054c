"""`delta-rlvr compare` on the shipped tiny model: 2 methods x 2 seeds x 2 steps, tiny evals."""

import json
import math
import shutil

import pytest
from scipy import stats

from delta_rlvr.cli import main
from delta_rlvr.evaluation import read_report
from delta_rlvr.train.metrics import read_metrics

TINY = ["rollout.prompts_per_step=4", "rollout.samples_per_prompt=4", "run.eval_samples=1", "run.progress=false",
        "run.threads=1", "optim.lr=1e-3", "run.max_steps=2", "run.save_every=1", "run.tensorboard=false"]


def compare(out):
    args = ["compare", "--method", "dapo", "--method", "delta", "--seeds", "0", "1", "--output-dir", str(out),
            "--eval-problems", "6", "--k", "4", "--top-p", "1.0"]
    for s in TINY:
        args += ["--set", s]
    return main(args)


def test_compare_reports_tests_and_plots_then_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare(out) == 0
    first = capsys.readouterr().out
    assert first.count("training to step 2") == 4
    for name in ("compare.md", "compare.json", "curves.png", "coefficients.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

    data = json.loads((out / "compare.json").read_text())
    results = {r["label"]: r for r in data["results"]}
    for label in ("dapo", "delta"):
        per_seed = [read_report(out / label / f"seed-{s}" / "eval").average for s in (0, 1)]
        assert [p.problems for p in per_seed] == [6, 6]
        assert results[label]["scores"] == [p.avg for p in per_seed]
        assert results[label]["eval_se"] == [p.se_sampling for p in per_seed]
        a, b = per_seed[0].avg, per_seed[1].avg
        assert math.isclose(results[label]["mean"], (a + b) / 2, abs_tol=1e-15)
        assert math.isclose(results[label]["std"], abs(a - b) / math.sqrt(2), abs_tol=1e-15)
    ref = stats.mannwhitneyu(results["delta"]["scores"], results["dapo"]["scores"], alternative="greater")
    assert results["delta"]["test"]["u"] == float(ref.statistic)
    assert math.isclose(results["delta"]["test"]["p_value"], float(ref.pvalue), rel_tol=1e-12)
    assert results["dapo"]["test"] is None
    assert "| delta |" in (out / "compare.md").read_text()
    # Training dynamics: 2 steps in 2 spans of one step; the dapo length cell is the mean over seeds.
    dyn = data["dynamics"]
    assert dyn["spans"] == [[1, 1], [2, 2]]
    lengths = [[r["response_length"] for r in read_metrics(out / "dapo" / f"seed-{s}" / "metrics.jsonl") if r["step"] == 2][0]
               for s in (0, 1)]
    assert math.isclose(dyn["methods"]["dapo"]["response_length"][1][0], sum(lengths) / 2, rel_tol=1e-12)
    assert "| response length (tokens) | dapo |" in (out / "compare.md").read_text()

    # Rerun: nothing is trained again, evaluations are reused, the summary is identical.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/checkpoints/step-*/model.safetensors")}
    summary = (out / "compare.json").read_text()
    assert compare(out) == 0
    assert capsys.readouterr().out.count("finished (step 2), not trained again") == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "compare.json").read_text() == summary

    # An interrupted run (its last checkpoint gone) resumes from step 1 and ends where it did.
    metrics = (out / "delta" / "seed-1" / "metrics.jsonl").read_text()
    shutil.rmtree(out / "delta" / "seed-1" / "checkpoints" / "step-00000002")
    assert compare(out) == 0
    assert "delta/seed-1: resuming at step 1 to step 2" in capsys.readouterr().out
    strip = lambda text: [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")} for x in text.splitlines()]  # noqa: E731
    assert strip((out / "delta" / "seed-1" / "metrics.jsonl").read_text()) == strip(metrics)

    # --partial summarises what is finished and trains nothing: delta seed 1 unfinished again.
    shutil.rmtree(out / "delta" / "seed-1" / "checkpoints" / "step-00000002")
    assert main(["compare", "--partial", "--name", "progress", "--method", "dapo", "--method", "delta", "--seeds", "0", "1",
                 "--output-dir", str(out), "--eval-problems", "6", "--k", "4", "--top-p", "1.0",
                 *[x for s in TINY for x in ("--set", s)]]) == 0
    assert "training to step" not in capsys.readouterr().out
    partial = {r["label"]: r for r in json.loads((out / "progress.json").read_text())["results"]}
    assert partial["dapo"]["seeds"] == [0, 1] and partial["delta"]["seeds"] == [0]
    assert partial["delta"]["scores"] == results["delta"]["scores"][:1]
    assert "partial" in (out / "progress.md").read_text() and (out / "progress-curves.png").is_file()


def test_compare_refuses_a_run_folder_trained_with_another_config(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--method", "dapo", "--seeds", "0", "--output-dir", str(out), "--eval-problems", "2", "--k", "2"]
    tiny = [x for s in [*TINY, "run.max_steps=1"] for x in ("--set", s)]
    assert main(args + tiny) == 0
    capsys.readouterr()
    assert main(args + tiny + ["--set", "optim.lr=5e-4"]) == 2
    assert "optim.lr = 0.001" in capsys.readouterr().err


def test_a_run_locked_by_another_process_is_deferred_not_trained_twice(tmp_path):
    from delta_rlvr.analysis.compare import run_lock

    with run_lock(tmp_path / "dapo" / "seed-0") as held:
        assert held
        with run_lock(tmp_path / "dapo" / "seed-0", wait=False) as second:  # another open file = another holder
            assert second is False
    with run_lock(tmp_path / "dapo" / "seed-0", wait=False) as again:
        assert again


def test_seed_order_trains_every_method_at_a_seed_before_the_next_seed():
    from delta_rlvr.analysis.compare import CompareConfig, parse_method, run_order
    from delta_rlvr.train.config import ConfigError

    methods = (parse_method("dapo"), parse_method("delta"))
    by_method = [(m.label, s) for m, s in run_order(CompareConfig(methods=methods, seeds=(0, 1, 2)))]
    by_seed = [(m.label, s) for m, s in run_order(CompareConfig(methods=methods, seeds=(0, 1, 2), order="seed"))]
    assert by_method == [("dapo", 0), ("dapo", 1), ("dapo", 2), ("delta", 0), ("delta", 1), ("delta", 2)]
    assert by_seed == [("dapo", 0), ("delta", 0), ("dapo", 1), ("delta", 1), ("dapo", 2), ("delta", 2)]
    with pytest.raises(ConfigError, match="order = 'random'"):
        CompareConfig(methods=methods, order="random")
