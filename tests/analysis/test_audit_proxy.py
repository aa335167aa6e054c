"""`delta-rlvr audit-proxy`: the top-half overlap, and one audit of the shipped tiny model."""

import json
import re

import numpy as np
import pytest
import torch

from delta_rlvr.analysis.audit import CHEAP, REFERENCE, pick_exact_tokens, top_half_overlap
from delta_rlvr.cli import main


def test_top_half_overlap_is_one_for_the_same_order_and_zero_for_the_reverse():
    a = [0.3, 1.2, 0.9, 1.1, 0.8, 1.0]
    assert top_half_overlap(a, a) == 1.0
    assert top_half_overlap([2 * x + 5 for x in a], a) == 1.0  # only the order matters
    assert top_half_overlap([-x for x in a], a) == 0.0
    # Odd n: the top half is n // 2 tokens, so the reversed order still shares none.
    assert top_half_overlap([5, 4, 3, 2, 1], [1, 2, 3, 4, 5]) == 0.0
    assert top_half_overlap([1.0], [1.0]) is None


def test_top_half_overlap_breaks_ties_at_the_boundary_at_random_in_expectation():
    # Proxy [1, 2, 2, 3]: its top 2 are index 3 and one of the tied indices 1, 2 (each with
    # probability 1/2). Reference [4, 3, 2, 1]: top 2 = {0, 1}. Overlap 1/2 or 0: expected 1/4.
    assert top_half_overlap([1, 2, 2, 3], [4, 3, 2, 1]) == pytest.approx(0.25)
    # An all-tied proxy carries no ranking: chance level k / n.
    assert top_half_overlap([1, 1, 1, 1], [4, 3, 2, 1]) == pytest.approx(0.5)
    # Ties entirely above the boundary change nothing.
    assert top_half_overlap([3, 3, 1, 0], [4, 3, 2, 1]) == 1.0


def test_exact_tokens_are_split_between_the_sides():
    adv = torch.tensor([1.0, -1.0, 0.0, 2.0])
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 3:] = False  # the negative response has 3 tokens
    chosen = pick_exact_tokens(adv, mask, 8, seed=0)
    sides = [float(adv[r]) for r, _ in chosen]
    assert len(chosen) == 8 and len(set(chosen)) == 8
    assert sum(s < 0 for s in sides) == 3, "the negative side gives all it has, the positive side fills in"
    assert all(s != 0 for s in sides) and all(mask[r, t] for r, t in chosen)


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """One small audit through the CLI (seed 1: both groups have right and wrong answers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("audit")
    code = main(["audit-proxy", "embedded:arith-tiny", "--prompts", "2", "--samples", "4", "--seed", "1",
                 "--sketch-dim", "1024", "--exact-tokens", "8", "--topk", "16", "--output-dir", str(out)])
    torch.set_num_threads(threads)
    assert code == 0
    return out


def test_audit_writes_every_proxy_and_side_to_its_files(audit):
    assert (audit / "audit.png").stat().st_size > 10_000
    report = json.loads((audit / "audit.json").read_text())
    assert report["settings"]["topk"] == 16 and report["settings"]["sketch_dim"] == 1024
    assert report["batch"]["tokens_pos"] > 0 and report["batch"]["tokens_neg"] > 0
    assert set(report["proxies"]) == {*CHEAP, REFERENCE}
    for name, p in report["proxies"].items():
        assert p["seconds"] > 0 and p["peak_memory_mib"] is not None
        if name == REFERENCE:
            continue
        for side in ("pos", "neg"):
            a = p["agreement"][side]
            assert a["tokens"] == report["batch"][f"tokens_{side}"]
            assert -1 <= a["spearman"] <= 1
            assert 0 <= a["top_half_overlap"] <= 1
    repeat = report["sketch_repeat"]["agreement"]
    assert all(-1 <= repeat[s]["spearman"] <= 1 for s in ("pos", "neg"))


def _table_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[0] != "proxy":
            rows[cells[0]] = cells[1:]
    return rows


def test_audit_markdown_shows_the_numbers_of_the_json(audit):
    report = json.loads((audit / "audit.json").read_text())
    rows = _table_rows((audit / "audit.md").read_text())
    seed = report["sketch_repeat"]["sketch_seed"]
    entries = {**report["proxies"], f"{REFERENCE} (seed {seed})": {**report["sketch_repeat"], "dim": 1024}}
    assert set(rows) == set(entries)
    for name, p in entries.items():
        dim, sp_pos, sp_neg, top_pos, top_neg, seconds, mib = rows[name]
        assert int(dim) == p["dim"]
        assert float(seconds) == pytest.approx(p["seconds"], abs=0.006)
        assert float(mib) == pytest.approx(p["peak_memory_mib"], abs=0.06)
        agree = p.get("agreement")
        if agree is None:
            assert {sp_pos, sp_neg, top_pos, top_neg} == {"-"}
            continue
        for cell, side, key in ((sp_pos, "pos", "spearman"), (sp_neg, "neg", "spearman"),
                                (top_pos, "pos", "top_half_overlap"), (top_neg, "neg", "top_half_overlap")):
            assert float(cell) == pytest.approx(agree[side][key], abs=6e-4)


def test_reported_sketch_error_matches_its_predicted_spread(audit):
    err = json.loads((audit / "audit.json").read_text())["sketch_error"]
    assert err["tokens"] == 8 and err["tokens_pos"] == 4 and err["tokens_neg"] == 4 and err["pairs"] == 28
    # Errors divided by the count-sketch's predicted std have RMS ~ 1 (28 pairs: a loose band).
    assert 0.3 <= err["rms_standardised_error"] <= 3
    assert err["inverse_sqrt_dim"] == pytest.approx(1 / np.sqrt(1024))
    assert 0.2 * err["inverse_sqrt_dim"] <= err["rms_relative_error"] <= 3 * err["inverse_sqrt_dim"]
    # The exact-gradient pass sketches the chosen tokens as the reference pass did.
    assert err["max_diff_vs_reference_pass"] < 1e-4
    md = (audit / "audit.md").read_text()
    numbers = re.search(r"(?m)^\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", md).groups()
    keys = ("rms_relative_error", "predicted_rms_relative_error", "inverse_sqrt_dim", "rms_standardised_error",
            "max_abs_standardised_error")
    for cell, key in zip(numbers, keys):
        assert float(cell) == pytest.approx(err[key], abs=6e-4)


def test_audit_refuses_bad_options_naming_them(capsys):
    assert main(["audit-proxy", "embedded:arith-tiny", "--exact-tokens", "1"]) == 2
    assert "--exact-tokens" in capsys.readouterr().err
    assert main(["audit-proxy", "embedded:arith-tiny", "--samples", "1"]) == 2
    assert "--samples" in capsys.readouterr().err
