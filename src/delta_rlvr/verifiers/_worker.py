"""Verifier worker process: reads check requests as JSON lines on stdin, answers on stdout.

Started by `pool.py` as `python -m delta_rlvr.verifiers._worker MEMORY_MB`, never by users.
It is a plain subprocess, not a multiprocessing child, so the caller's `__main__` is never
re-imported, nothing is forked from a threaded trainer, and a hung worker can be SIGKILLed.

Inside, a soft deadline (SIGALRM via setitimer, raising a BaseException so no library
`except Exception` swallows it) ends slow pure-Python work and keeps the worker alive; the
pool's hard deadline kills the worker when C code (a huge integer power) ignores signals.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys


class _SoftDeadline(BaseException):
    """Raised by SIGALRM inside a check; BaseException so `except Exception` cannot eat it."""


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _SoftDeadline()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker if the thread that started it goes away."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: stdin EOF still ends the worker once it is idle


def main() -> None:
    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    _die_with_parent()
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The protocol owns the real stdout; anything a library prints goes to /dev/null.
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    from delta_rlvr.verifiers.equivalence import check_equivalence

    check_equivalence("\\frac{1}{2}", "\\sqrt{2}/2")  # warm sympy and math-verify caches
    signal.signal(signal.SIGALRM, _on_alarm)
    protocol.write(json.dumps({"ready": True}) + "\n")

    for line in sys.stdin:
        request = json.loads(line)
        soft_s = float(request["soft_s"])
        try:
            signal.setitimer(signal.ITIMER_REAL, soft_s)
            try:
                verdict, detail = check_equivalence(request["gold"], request["pred"], request.get("mode", "extracted"))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _SoftDeadline:
            verdict, detail = "timeout", f"soft deadline of {soft_s:.2f}s hit inside the worker"
        except MemoryError:
            verdict, detail = "timeout", "worker memory limit hit"
        except RecursionError:
            verdict, detail = "unparsed", "recursion too deep while parsing"
        except Exception as error:  # noqa: BLE001 - a verdict must always come back
            verdict, detail = "wrong", f"checker error {type(error).__name__}"
        protocol.write(json.dumps({"id": request["id"], "verdict": verdict, "detail": detail}) + "\n")


if __name__ == "__main__":
    main()
