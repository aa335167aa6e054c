"""The ablation table of docs/results.md from the study folder of `scripts/studies.sh ablations`.

    python scripts/ablation_table.py STUDY_DIR                            # seeds 0-2, every variant
    python scripts/ablation_table.py STUDY_DIR --seeds 0 1 2 3 4 5 6 7    # the variants that have these seeds

Per variant with all the seeds finished: seeds, mean avg@8, std over seeds, evaluation SE of
the mean, per-seed scores (all from `compare.summarise`), one-sided Mann-Whitney p of
"variant > DAPO", of "DAPO > variant" and of "full DelTA > variant", the mean over steps and
seeds of the coefficient std and 5 % / 95 % quantiles (delta/coef_*), and of the saturation ratio: the std of the final margins over the
temperature that divides them (delta/margin_std_pos / delta/gamma_pos; about 1 when the
temperature is the margins' own std, large when the sigmoids saturate), and the training
reward over the last quarter of the steps (mean over seeds). Last, the Spearman rank
correlations over the rows between the coefficient std, that reward and the held-out score.
"""
import argparse
import math
from pathlib import Path

from scipy.stats import spearmanr

from delta_rlvr.analysis.compare import summarise
from delta_rlvr.analysis.plots import dynamics
from delta_rlvr.evaluation import read_report
from delta_rlvr.stats.mann_whitney import mann_whitney_greater
from delta_rlvr.train.metrics import read_metrics

PAPER = {"dapo": "19.05", "delta": "23.27", "K0": "19.97", "K2": "22.15", "K3": "22.20", "hard": "20.93",
         "within_side": "17.94", "no_range_map": "20.78", "no_self_norm": "21.39", "random_coef": "18.34",
         "frozen_gamma": "21.19", "range_0.5_1.2": "23.22", "range_0.8_1.5": "22.77", "range_0.5_1.5": "23.07"}
NAME = {"dapo": "DAPO", "delta": "full DelTA (K = 1)", "K0": "K = 0 (no refinement)", "K2": "K = 2", "K3": "K = 3",
        "hard": "hard assignment", "within_side": "within-side only", "no_range_map": "no range map (lambda = alpha)",
        "no_self_norm": "no self-normalisation (DAPO normaliser)", "random_coef": "random lambda",
        "frozen_gamma": "frozen temperature", "range_0.5_1.2": "range [0.5, 1.2]", "range_0.8_1.5": "range [0.8, 1.5]",
        "range_0.5_1.5": "range [0.5, 1.5]"}
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("study_dir", type=Path, help="the STUDY_DIR of scripts/studies.sh")
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the seeds to use (default 0 1 2)")
args = parser.parse_args()
root = args.study_dir


def finished(label):
    return [s for s in args.seeds if (root / label / f"seed-{s}" / "eval" / "report.json").is_file()]


def summary(label, seeds, baseline_scores=None):
    return summarise(label, seeds, [read_report(root / label / f"seed-{s}" / "eval") for s in seeds], baseline_scores)


def coefficient_spread(label, seeds):
    """(std, q05, q95, saturation ratio) of the coefficients, mean over steps then seeds; None for DAPO.
    The ratio is nan for random lambda, which has no margins."""
    per_seed = []
    for s in seeds:
        rows = [r for r in read_metrics(root / label / f"seed-{s}" / "metrics.jsonl") if "delta/coef_std" in r]
        if rows:
            # delta/gamma_pos; runs logged before the rename have only its old name delta/temperature_pos
            gammas = [r.get("delta/gamma_pos", r.get("delta/temperature_pos")) for r in rows]
            ratios = [r["delta/margin_std_pos"] / g if g else math.nan for r, g in zip(rows, gammas)]
            per_seed.append([sum(r[k] for r in rows) / len(rows) for k in ("delta/coef_std", "delta/coef_q05", "delta/coef_q95")]
                            + [sum(ratios) / len(ratios)])
    return [sum(col) / len(col) for col in zip(*per_seed)] if per_seed else None


def last_quarter_reward(label, seeds):
    """Training reward over the last of four spans of steps, mean over seeds (as compare prints it)."""
    return dynamics({label: [root / label / f"seed-{s}" for s in seeds]})["methods"][label]["reward_mean"][-1][0]


dapo, delta = summary("dapo", finished("dapo")), summary("delta", finished("delta"))
missing, points = [], []
for label, name in NAME.items():
    seeds = finished(label)
    if len(seeds) < len(args.seeds):
        missing.append(f"{label} ({len(seeds)} of {len(args.seeds)} seeds)")
        continue
    s = summary(label, seeds, None if label == "dapo" else list(dapo.scores))
    p_dapo = "" if s.test is None else f"{s.test.p_value:.2f}"
    p_below = "" if label == "dapo" else f"{mann_whitney_greater(dapo.scores, s.scores).p_value:.2f}"
    p_delta = "" if label == "delta" else f"{mann_whitney_greater(delta.scores, s.scores).p_value:.2f}"
    c = coefficient_spread(label, seeds)
    ratio = "-" if not c or math.isnan(c[3]) else f"{c[3]:.2f}"
    spread = f"{c[0]:.3f} ({c[1]:.2f}-{c[2]:.2f}) | {ratio}" if c else "- | -"
    per = ", ".join(f"{100 * x:.2f}" for x in s.scores)
    reward = last_quarter_reward(label, seeds)
    points.append((c[0] if c else 0.0, reward, s.mean))
    print(f"| {name} | {len(s.seeds)} | {100 * s.mean:.2f} | {100 * s.std:.2f} | {100 * s.mean_eval_se:.2f} | {per} "
          f"| {p_dapo} | {p_below} | {p_delta} | {spread} | {reward:.3f} | {PAPER[label]} |")
print("not finished yet:", ", ".join(missing) or "none")
if len(points) > 2:
    std, reward, score = zip(*points)  # DAPO's coefficients are all 1: std 0
    for a, b, what in ((std, reward, "coefficient std vs last-quarter training reward"),
                       (std, score, "coefficient std vs held-out avg@8"), (reward, score, "training reward vs held-out avg@8")):
        r = spearmanr(a, b)
        print(f"Spearman {what}: {r.statistic:.2f} (p = {r.pvalue:.3f}, {len(points)} rows)")
