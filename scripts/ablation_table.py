"""The ablation table of docs/results.md from the study folder of `scripts/studies.sh ablations`.

    python scripts/ablation_table.py STUDY_DIR

Per variant: seeds finished, mean avg@8, std over seeds, evaluation SE of the mean, per-seed
scores, one-sided Mann-Whitney p of "variant > DAPO" and of "full DelTA > variant", and the
mean over steps and seeds of the coefficient std and 5 % / 95 % quantiles (delta/coef_*).
"""
import json
import math
import sys
from pathlib import Path
from delta_rlvr.evaluation.mann_whitney import mann_whitney_greater
root = Path(sys.argv[1])
PAPER = {"dapo": "19.05", "delta": "23.27", "K0": "19.97", "K2": "22.15", "K3": "22.20", "hard": "20.93",
         "within_side": "17.94", "no_range_map": "20.78", "no_self_norm": "21.39", "random_coef": "18.34",
         "frozen_gamma": "21.19", "range_0.5_1.2": "23.22", "range_0.8_1.5": "22.77", "range_0.5_1.5": "23.07"}
NAME = {"dapo": "DAPO", "delta": "full DelTA (K = 1)", "K0": "K = 0 (no refinement)", "K2": "K = 2", "K3": "K = 3",
        "hard": "hard assignment", "within_side": "within-side only", "no_range_map": "no range map (lambda = alpha)",
        "no_self_norm": "no self-normalisation (DAPO normaliser)", "random_coef": "random lambda",
        "frozen_gamma": "frozen temperature", "range_0.5_1.2": "range [0.5, 1.2]", "range_0.8_1.5": "range [0.8, 1.5]",
        "range_0.5_1.5": "range [0.5, 1.5]"}
def runs(v):
    return [root / v / f"seed-{s}" for s in (0, 1, 2) if (root / v / f"seed-{s}" / "eval" / "report.json").is_file()]
def avg(d):
    a = json.loads((d / "eval" / "report.json").read_text())["average"]
    return 100 * a["avg"], 100 * a["se_sampling"]
def cstats(d):
    rows = [json.loads(l) for l in open(d / "metrics.jsonl")]
    rows = [r for r in rows if "delta/coef_std" in r]
    if not rows: return None
    m = lambda k: sum(r[k] for r in rows) / len(rows)
    return m("delta/coef_std"), m("delta/coef_q05"), m("delta/coef_q95")
base = {ref: [avg(d)[0] for d in runs(ref)] for ref in ("dapo", "delta")}
missing = []
for v in NAME:
    rs = runs(v)
    if not rs: missing.append(v); continue
    xs = [avg(d) for d in rs]; sc = [x for x, _ in xs]
    m = sum(sc) / len(sc); sd = math.sqrt(sum((x - m) ** 2 for x in sc) / (len(sc) - 1)) if len(sc) > 1 else float("nan")
    se = math.sqrt(sum(e * e for _, e in xs)) / len(xs)
    p1 = "" if v == "dapo" else f"{mann_whitney_greater(sc, base['dapo']).p_value:.2f}"
    p2 = "" if v in ("delta",) else f"{mann_whitney_greater(base['delta'], sc).p_value:.2f}"
    cs = [c for c in (cstats(d) for d in rs) if c]
    c = f"{sum(x[0] for x in cs)/len(cs):.3f} ({sum(x[1] for x in cs)/len(cs):.2f}-{sum(x[2] for x in cs)/len(cs):.2f})" if cs else "-"
    per = ", ".join(f"{x:.2f}" for x, e in xs)
    print(f"| {NAME[v]} | {len(sc)} | {m:.2f} | {sd:.2f} | {se:.2f} | {per} | {p1} | {p2} | {c} | {PAPER[v]} |")
print("not finished yet:", ", ".join(missing) or "none")
