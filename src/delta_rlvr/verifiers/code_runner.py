"""Run a Python solution against test cases in a throwaway sandbox process.

Test styles (as in HumanEval+/MBPP+/LiveCodeBench):
- stdin/stdout: one process per case, the case's input on stdin, stdout compared to the
  expected output line by line after trailing whitespace is removed (then token by token, so
  a different line wrapping of the same tokens still passes);
- assert-style: the solution followed by test code (plain `assert`s, or a HumanEval
  `check(candidate)` plus the call) in one process; AssertionError = failed.

Isolation, strongest available first (`sandbox_isolation()` says which one is in use):
1. Linux namespaces via `unshare`: a new network namespace (no interfaces but a down
   loopback, so no network at all); a new PID namespace whose init is the harness, so when the
   harness ends or is killed the kernel kills every process it forked, even ones that called
   setsid; and a private mount namespace in which the harness remounts every mount read-only
   except a bind mount of the sandbox dir, so nothing outside it can be deleted or modified,
   by Python or by anything it execs. Without root, a user namespace (`unshare -r`) is added.
   (Dropping to `nobody` instead was tried and rejected: the interpreter's stdlib may live under
   a directory only its owner can read, e.g. a pyenv build under /root.)
2. Always, inside the process: rlimits (address space, CPU seconds, file size so an output
   flood dies at `max_output_bytes`, no core files, at most 256 processes per non-root uid) and a
   Python audit hook that refuses sockets, subprocesses/exec, and writes, deletions or renames
   outside the private temp dir. The audit hook alone is the fallback when `unshare` is missing
   or refused; it stops accidents, not a determined attacker (ctypes can bypass it).
The parent always enforces the wall-clock limit by SIGKILLing the process group, and deletes
the temp dir afterwards.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CodeStatus = Literal["passed", "failed", "error", "timeout"]

_HARNESS_SOURCE = (Path(__file__).parent / "_sandbox_harness.py").read_text(encoding="utf-8")


@dataclass(frozen=True)
class CodeTests:
    """Test cases for one problem: `stdio` (input, expected output) pairs, or `assert_code`."""

    stdio: tuple[tuple[str, str], ...] = ()
    assert_code: str = ""

    def __post_init__(self) -> None:
        if bool(self.stdio) == bool(self.assert_code.strip()):
            raise ValueError(
                "CodeTests needs exactly one of stdio=((input, expected_output), ...) or "
                "assert_code='assert f(1) == 2'; got "
                f"{len(self.stdio)} stdio cases and {len(self.assert_code)} chars of assert_code"
            )
        for index, case in enumerate(self.stdio):
            if len(case) != 2 or not all(isinstance(part, str) for part in case):
                raise ValueError(f"stdio[{index}] must be an (input: str, expected_output: str) pair")


@dataclass(frozen=True)
class CodeResult:
    """Outcome of one solution: score 1.0 only when every case passed."""

    status: CodeStatus
    score: float
    passed_cases: int
    total_cases: int
    detail: str = ""


@functools.cache
def _unshare_prefix() -> tuple[str, ...]:
    """The `unshare` command that works here, or () when namespaces are unavailable."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    flags = ["--mount", "--net", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        flags.insert(0, "--map-root-user")
    command = (unshare, *flags)
    try:
        probe = subprocess.run([*command, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return command if probe.returncode == 0 else ()


def sandbox_isolation() -> str:
    """Human-readable description of the isolation `run_code_tests` uses on this machine."""
    if _unshare_prefix():
        who = "" if os.geteuid() == 0 else " inside a user namespace"
        return f"unshare mount+net+pid namespaces{who}, read-only mounts but the sandbox dir, rlimits, audit hook"
    return "rlimits and audit hook only (unshare unavailable): no kernel network isolation"


def _run_once(
    box: Path, mode: str, stdin_text: str, timeout_s: float, memory_mb: int, max_output_bytes: int
) -> tuple[str, str, str]:
    """Run the harness once; returns (outcome, stdout, stderr tail). outcome 'timeout' or the
    harness status ('ok', 'failed', 'error ...'), or 'error ...' when no status came back."""
    (box / "stdin.txt").write_text(stdin_text, encoding="utf-8")
    isolate = "mount" if _unshare_prefix() else "none"
    nonce = os.urandom(16).hex()
    nonce_read, nonce_write = os.pipe()
    status_read, status_write = os.pipe()
    os.write(nonce_write, nonce.encode())
    os.close(nonce_write)
    command = [
        *_unshare_prefix(), sys.executable, "-I", "-B", "-c", _HARNESS_SOURCE, mode, str(box),
        str(memory_mb * 1024 * 1024), str(int(timeout_s) + 1), str(max_output_bytes), isolate,
        str(nonce_read), str(status_write),
    ]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HOME": str(box), "TMPDIR": str(box), "LANG": "C.UTF-8"}
    out_path, err_path = box.parent / "stdout.txt", box.parent / "stderr.txt"
    with open(box / "stdin.txt", "rb") as stdin, open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(
            command, stdin=stdin, stdout=out, stderr=err, cwd=box, env=env,
            pass_fds=(nonce_read, status_write), start_new_session=True,
        )  # fmt: skip
    os.close(nonce_read)
    os.close(status_write)
    timed_out = False
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(process)
    os.set_blocking(status_read, False)
    try:
        status = os.read(status_read, 4096).decode(errors="replace")
    except BlockingIOError:
        status = ""
    os.close(status_read)
    stdout = _read_capped(out_path, max_output_bytes)
    stderr = _read_capped(err_path, 4000)
    if timed_out:
        return "timeout", stdout, stderr
    if not status.startswith(nonce + " "):
        size = out_path.stat().st_size
        why = "output limit" if size >= max_output_bytes else f"exit code {process.returncode}"
        return f"error no status from the harness ({why})", stdout, stderr
    return status[len(nonce) + 1 :].strip(), stdout, stderr


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _read_capped(path: Path, limit: int) -> str:
    with open(path, "rb") as handle:
        return handle.read(limit).decode("utf-8", errors="replace")


def outputs_match(expected: str, actual: str) -> bool:
    """Line-wise after trailing whitespace is removed, else the same whitespace-split tokens."""
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip().splitlines()]

    return lines(expected) == lines(actual) or expected.split() == actual.split()


def run_code_tests(
    solution: str,
    tests: CodeTests,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 1 << 20,
    stop_at_first_failure: bool = True,
) -> CodeResult:
    """Run `solution` on `tests` in the sandbox; never raises for anything the solution does.

    timeout_s: wall-clock limit per process (per case for stdio tests).
    memory_mb: address-space limit of the sandboxed interpreter.
    max_output_bytes: stdout beyond this kills the process (status error).
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s!r} must be positive")
    if memory_mb < 64:
        raise ValueError(f"memory_mb={memory_mb} is too small for a Python interpreter; use >= 64")
    workdir = Path(tempfile.mkdtemp(prefix="delta-sandbox-"))
    box = workdir / "box"
    box.mkdir()
    try:
        (box / "solution.py").write_text(solution, encoding="utf-8")
        if tests.assert_code:
            (box / "tests.py").write_text(tests.assert_code, encoding="utf-8")
            outcome, _, stderr = _run_once(box, "assert", "", timeout_s, memory_mb, max_output_bytes)
            return _single_result(outcome, stderr)
        passed = 0
        first_problem: tuple[CodeStatus, str] | None = None
        for index, (stdin_text, expected) in enumerate(tests.stdio):
            outcome, stdout, stderr = _run_once(box, "stdio", stdin_text, timeout_s, memory_mb, max_output_bytes)
            if outcome == "ok" and outputs_match(expected, stdout):
                passed += 1
                continue
            if first_problem is None:
                status: CodeStatus = "timeout" if outcome == "timeout" else "failed" if outcome == "ok" else "error"
                why = f"case {index}: wrong output {stdout[:200]!r}" if outcome == "ok" else f"case {index}: {outcome} {stderr[-500:]}"
                first_problem = (status, why)
            if stop_at_first_failure:
                break
        total = len(tests.stdio)
        if first_problem is None:
            return CodeResult("passed", 1.0, passed, total)
        return CodeResult(first_problem[0], 0.0, passed, total, first_problem[1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _single_result(outcome: str, stderr: str) -> CodeResult:
    if outcome == "ok":
        return CodeResult("passed", 1.0, 1, 1)
    if outcome == "timeout":
        return CodeResult("timeout", 0.0, 0, 1, "wall-clock limit")
    if outcome == "failed":
        return CodeResult("failed", 0.0, 0, 1, stderr[-500:])
    return CodeResult("error", 0.0, 0, 1, f"{outcome} {stderr[-500:]}".strip())
