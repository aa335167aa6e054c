"""The evaluation report, recomputed from the dump: avg@k, unbiased pass@k', standard errors
per benchmark, and the question-count-weighted average across benchmarks (the paper's "Avg").
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from delta_rlvr.evaluation.dump import SampleRow
from delta_rlvr.stats.estimators import (
    avg_at_k,
    mean_pass_at_k,
    problem_standard_error,
    reported_ks,
    sampling_standard_error,
    weighted_average,
    weighted_standard_error,
)


@dataclass(frozen=True)
class BenchmarkScore:
    name: str
    problems: int
    k: int
    avg: float
    """avg@k: mean correctness over the problems' k samples."""
    pass_at: dict[str, float]
    """"1", "2", ... "k" -> mean unbiased pass@k' over the problems."""
    se_sampling: float
    """The evaluation's own SE of avg@k (resample responses, same problems)."""
    se_problems: float
    """SE of avg@k over the problem distribution (std of per-problem accuracy / sqrt(n))."""
    reasons: dict[str, int]
    """Verifier reasons over all samples."""
    cut: float | None = None
    """Fraction of responses cut at max_new_tokens (no end-of-sequence); None when the dump
    predates the record."""


@dataclass(frozen=True)
class EvalReport:
    k: int
    benchmarks: tuple[BenchmarkScore, ...]
    average: BenchmarkScore
    """Question-count-weighted average of every field (name "weighted average")."""
    settings: dict

    def to_json(self) -> dict:
        """JSON has no NaN: an undefined standard error (k = 1, one problem) is written as null."""

        def clean(score: BenchmarkScore) -> dict:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(score).items()}

        return {"k": self.k, "settings": self.settings, "benchmarks": [clean(b) for b in self.benchmarks], "average": clean(self.average)}

    @staticmethod
    def from_json(data: dict) -> EvalReport:
        def load(d: dict) -> BenchmarkScore:
            return BenchmarkScore(**{k: (float("nan") if v is None and k.startswith("se_") else v) for k, v in d.items()})

        return EvalReport(data["k"], tuple(load(b) for b in data["benchmarks"]), load(data["average"]), data["settings"])


def score_benchmark(name: str, problems: list[list[SampleRow]], k: int) -> BenchmarkScore:
    """problems: each problem's k rows in sample order."""
    correct = [[r.correct for r in rows] for rows in problems]
    return BenchmarkScore(
        name=name, problems=len(problems), k=k, avg=avg_at_k(correct),
        pass_at={str(j): mean_pass_at_k(correct, j) for j in reported_ks(k)},
        se_sampling=sampling_standard_error(correct), se_problems=problem_standard_error(correct),
        reasons=dict(sorted(Counter(r.reason for rows in problems for r in rows).items())),
        cut=_cut_fraction([r for rows in problems for r in rows]),
    )


def _cut_fraction(rows: list[SampleRow]) -> float | None:
    known = [r.cut for r in rows if r.cut is not None]
    return sum(known) / len(known) if known and len(known) == len(rows) else None


def weighted(scores: list[BenchmarkScore]) -> BenchmarkScore:
    w = [s.problems for s in scores]
    return BenchmarkScore(
        name="weighted average", problems=sum(w), k=scores[0].k,
        avg=weighted_average([s.avg for s in scores], w),
        pass_at={j: weighted_average([s.pass_at[j] for s in scores], w) for j in scores[0].pass_at},
        se_sampling=weighted_standard_error([s.se_sampling for s in scores], w),
        se_problems=weighted_standard_error([s.se_problems for s in scores], w),
        reasons=dict(sorted(sum((Counter(s.reasons) for s in scores), Counter()).items())),
        cut=(sum(s.cut * s.problems * s.k for s in scores) / sum(s.problems * s.k for s in scores)
             if all(s.cut is not None for s in scores) else None),
    )


def build_report(done: dict[tuple[str, str], list[SampleRow]], order: list[tuple[str, list[str]]], k: int, settings: dict) -> EvalReport:
    """Scores of the problems listed in `order` ((benchmark, problem ids) in report order) that
    the dump holds in full. A benchmark with none of its problems done is left out."""
    scores = []
    for name, ids in order:
        problems = [done[(name, pid)] for pid in ids if (name, pid) in done]
        if problems:
            scores.append(score_benchmark(name, problems, k))
    if not scores:
        raise ValueError("no complete problem in the dump; nothing to report")
    return EvalReport(k, tuple(scores), weighted(scores), settings)


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def to_markdown(report: EvalReport) -> str:
    ks = list(report.average.pass_at)
    head = ["benchmark", "problems", f"avg@{report.k}", "SE (sampling)", "SE (problems)", *[f"pass@{j}" for j in ks],
            "cut at limit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in [*report.benchmarks, report.average]:
        name = f"**{s.name}**" if s is report.average else s.name
        cells = [name, str(s.problems), _pct(s.avg), _pct(s.se_sampling), _pct(s.se_problems), *[_pct(s.pass_at[j]) for j in ks],
                 _pct(s.cut) if s.cut is not None else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    st = report.settings
    note = (f"\nAll numbers in percent. k = {report.k} samples per problem, temperature {st.get('temperature')}, "
            f"top-p {st.get('top_p')}, at most {st.get('max_new_tokens')} new tokens; model `{st.get('model')}`. "
            "pass@k' is the unbiased estimator of Chen et al. (2021); the last row weights each benchmark by its "
            "question count. \"cut at limit\": responses that reached the token limit without ending (scored as they stand; "
            "a high share means the limit, not the model, decided them).\n")
    return "\n".join(lines) + "\n" + note


def write_report(report: EvalReport, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    (out / "report.md").write_text(to_markdown(report))


def read_report(out: Path) -> EvalReport:
    return EvalReport.from_json(json.loads((out / "report.json").read_text()))
