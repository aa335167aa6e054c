"""The ablation table of docs/results.md from the study folder of `scripts/studies.sh ablations`.

    python scripts/ablation_table.py STUDY_DIR

Per variant: seeds finished, mean avg@8, std over seeds, evaluation SE of the mean, per-seed
scores (all from `compare.summarise`), one-sided Mann-Whitney p of "variant > DAPO" and of
"full DelTA > variant", and the mean over steps and seeds of the coefficient std and 5 % / 95 %
quantiles (delta/coef_*).
"""
import sys
from pathlib import Path

from delta_rlvr.evaluation import read_report
from delta_rlvr.evaluation.compare import summarise
from delta_rlvr.evaluation.mann_whitney import mann_whitney_greater
from delta_rlvr.train.metrics import read_metrics

PAPER = {"dapo": "19.05", "delta": "23.27", "K0": "19.97", "K2": "22.15", "K3": "22.20", "hard": "20.93",
         "within_side": "17.94", "no_range_map": "20.78", "no_self_norm": "21.39", "random_coef": "18.34",
         "frozen_gamma": "21.19", "range_0.5_1.2": "23.22", "range_0.8_1.5": "22.77", "range_0.5_1.5": "23.07"}
NAME = {"dapo": "DAPO", "delta": "full DelTA (K = 1)", "K0": "K = 0 (no refinement)", "K2": "K = 2", "K3": "K = 3",
        "hard": "hard assignment", "within_side": "within-side only", "no_range_map": "no range map (lambda = alpha)",
        "no_self_norm": "no self-normalisation (DAPO normaliser)", "random_coef": "random lambda",
        "frozen_gamma": "frozen temperature", "range_0.5_1.2": "range [0.5, 1.2]", "range_0.8_1.5": "range [0.8, 1.5]",
        "range_0.5_1.5": "range [0.5, 1.5]"}
root = Path(sys.argv[1])


def finished(label):
    return [s for s in (0, 1, 2) if (root / label / f"seed-{s}" / "eval" / "report.json").is_file()]


def summary(label, baseline_scores=None):
    seeds = finished(label)
    return summarise(label, seeds, [read_report(root / label / f"seed-{s}" / "eval") for s in seeds], baseline_scores)


def coefficient_spread(label):
    """(std, q05, q95) of the coefficients, mean over steps then seeds; None for DAPO."""
    per_seed = []
    for s in finished(label):
        rows = [r for r in read_metrics(root / label / f"seed-{s}" / "metrics.jsonl") if "delta/coef_std" in r]
        if rows:
            per_seed.append([sum(r[k] for r in rows) / len(rows) for k in ("delta/coef_std", "delta/coef_q05", "delta/coef_q95")])
    return [sum(col) / len(col) for col in zip(*per_seed)] if per_seed else None


dapo, delta = summary("dapo"), summary("delta")
missing = []
for label, name in NAME.items():
    if not finished(label):
        missing.append(label)
        continue
    s = summary(label, None if label == "dapo" else list(dapo.scores))
    p_dapo = "" if s.test is None else f"{s.test.p_value:.2f}"
    p_delta = "" if label == "delta" else f"{mann_whitney_greater(delta.scores, s.scores).p_value:.2f}"
    c = coefficient_spread(label)
    spread = f"{c[0]:.3f} ({c[1]:.2f}-{c[2]:.2f})" if c else "-"
    per = ", ".join(f"{100 * x:.2f}" for x in s.scores)
    print(f"| {name} | {len(s.seeds)} | {100 * s.mean:.2f} | {100 * s.std:.2f} | {100 * s.mean_eval_se:.2f} | {per} "
          f"| {p_dapo} | {p_delta} | {spread} | {PAPER[label]} |")
print("not finished yet:", ", ".join(missing) or "none")
