"""`delta-rlvr inspect` on the shipped tiny model: coefficients, HTML page, token cloud."""

import json
from collections import defaultdict

import pytest

from delta_rlvr.analysis.inspect import coefficient_view, inspect_settings, token_cloud
from delta_rlvr.cli import main
from delta_rlvr.core import DeltaConfig
from delta_rlvr.evaluation.benchmarks import task_benchmark
from delta_rlvr.train import TrainConfig
from delta_rlvr.train.policy import load_policy
from delta_rlvr.train.rollout import PolicyRunner
from delta_rlvr.train.tasks import PromptEncoder, build_task


def test_coefficients_are_self_normalised_and_the_cloud_averages_them_per_token():
    cfg = TrainConfig()
    model, tok, _ = load_policy(cfg.model)
    task = build_task(cfg.task)
    bench = task_benchmark(task)
    records = list(bench.records[:8])
    settings = inspect_settings(cfg, samples=4, temperature=1.0, max_new_tokens=40, prompts=len(records))
    batch = coefficient_view(PolicyRunner(model, 1.0, 128), tok, records, PromptEncoder(tok, "raw"), task.score, settings, seed=3)
    signed = batch.mask & (batch.advantages != 0)[:, None]
    assert signed.any(), "the shipped model gets some but not all of 8 problems right"
    # DelTA's self-normalisation: mean coefficient 1 over the batch's valid tokens (the DelTA paper, Eq. 8).
    assert batch.coef[batch.mask].mean().item() == pytest.approx(1.0, abs=1e-5)
    # Every valid coefficient is lambda x (one batch-wide factor N / Z), lambda in [0.8, 1.2]:
    # so max / min <= 1.2 / 0.8, and the spread is not degenerate.
    valid = batch.coef[batch.mask]
    assert valid.max() / valid.min() <= DeltaConfig().coef_max / DeltaConfig().coef_min + 1e-5
    assert batch.coef[signed].std() > 1e-3

    stats = token_cloud([batch], tok, min_count=1)
    by_hand = defaultdict(list)
    for i, j in signed.nonzero().tolist():
        by_hand[tok.decode([int(batch.completion_ids[i, j])])].append(float(batch.coef[i, j]))
    assert {s.token for s in stats} == set(by_hand)
    for s in stats:
        assert s.count == len(by_hand[s.token])
        assert s.mean == pytest.approx(sum(by_hand[s.token]) / s.count, abs=1e-12)
    assert [s.mean for s in stats] == sorted((s.mean for s in stats), reverse=True)


def test_cli_inspect_prints_tokens_and_writes_the_page_and_table(tmp_path, capsys):
    out = tmp_path / "inspect"
    code = main(["inspect", "embedded:arith-tiny", "--problems", "8", "--samples", "4", "--show", "2", "--min-count", "3",
                 "--top", "3", "--no-color", "--output-dir", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "highest mean coefficient" in text and "lowest mean coefficient" in text
    assert "[1." in text or "[0." in text, "tokens carry their coefficient in --no-color mode"
    assert "\x1b[" not in text
    page = (out / "tokens.html").read_text()
    assert "<span class='t' title=" in page and "<h2>Token cloud</h2>" in page
    cloud = json.loads((out / "token_cloud.json").read_text())
    assert cloud and all(row["count"] >= 3 for row in cloud)

    code = main(["inspect", "embedded:arith-tiny", "--prompt", "37+48+19=", "--gold", "104", "--samples", "4", "--show", "1",
                 "--color", "--output-dir", str(out)])
    assert code == 0
    assert "\x1b[48;2;" in capsys.readouterr().out
    assert main(["inspect", "embedded:arith-tiny", "--prompt", "1+2=", "--output-dir", str(out)]) == 2
