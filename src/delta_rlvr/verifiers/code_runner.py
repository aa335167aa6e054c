"""Run a Python solution against test cases in a throwaway sandbox process.

Test styles (as in HumanEval+/MBPP+/LiveCodeBench):
- stdin/stdout: one process per case, the case's input on stdin, stdout compared in this
  (the parent) process to the expected output line by line after trailing whitespace is
  removed (then token by token, so a different line wrapping of the same tokens still passes);
- function-style: `CodeTests(function="add", calls=(((1, 2), 3), ...))`: one process calls the
  solution's function on each argument tuple and sends back each returned value as plain data
  (`_value_codec.py`); this process rebuilds it from builtins and compares it with the expected
  value. The expected values never enter the sandbox, and nothing the solution defines (a
  custom `__eq__`, a forged status line) takes part in the comparison;
- assert-style: test code (plain `assert`s, or a HumanEval `check(candidate)` plus the call)
  runs in a separate sandboxed test process (`assert_process.py`), never with the solution:
  the solution's process runs the program and answers calls; in the test process the names
  the tests call are stubs that send the arguments there and rebuild the returned value as
  plain data, so the comparison is between builtins; AssertionError = failed. Only the test
  process holds the verdict pipe, and the solution's process never has the tests.

Isolation (`sandbox.py`, `sandbox_isolation()` says what is in use): bubblewrap with an
unprivileged uid, no capabilities, no_new_privs, seccomp, own pid/net/ipc/uts/mount namespaces,
read-only system and interpreter, a private /tmp, and memory/process limits on the whole tree
(a cgroup per run where one can be created, RLIMIT_NPROC otherwise). When that is not available
`run_code_tests` raises SandboxUnavailable saying what to install; isolation="none" runs the
code with rlimits and an audit hook only, which does NOT hold against hostile code.
The parent enforces the wall-clock limit by SIGKILLing the process group (and the cgroup),
and deletes the temp dir afterwards. Memory is limited by the cgroup alone where there is one
(threads are not limited by address space), by RLIMIT_AS per process otherwise; every file the
program writes by RLIMIT_FSIZE = `max_file_bytes`.
"""

from __future__ import annotations

import json
import marshal
import math
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from delta_rlvr.errors import ConfigError, SandboxUnavailable
from delta_rlvr.verifiers import _value_codec, assert_process
from delta_rlvr.verifiers.sandbox import (
    SANDBOX_UID,
    RunCgroup,
    SandboxPlan,
    bwrap_command,
    create_run_cgroup,
    harness_source,
    install_hint,
    interpreter,
    sandbox_plan,
    seccomp_memfd,
)

CodeStatus = Literal["passed", "failed", "error", "timeout"]
Isolation = Literal["bwrap", "none"]

__all__ = [
    "CodeResult",
    "CodeTests",
    "SandboxUnavailable",
    "outputs_match",
    "run_code_tests",
    "sandbox_isolation",
    "values_match",
]

_HERE = Path(__file__).parent
_HARNESS_SOURCE = harness_source("_sandbox_harness.py")
FLOAT_TOLERANCE = 1e-9  # relative and absolute, for floats inside function-style results
DEFAULT_MAX_FILE_BYTES = 64 << 20
"""RLIMIT_FSIZE of sandboxed programs: 64 MiB per file (stdout included; /tmp is also capped
at memory_mb as a whole, and its pages count against the memory limit)."""


@dataclass(frozen=True)
class CodeTests:
    """Test cases for one problem: exactly one of `stdio` (input, expected output) pairs,
    `assert_code`, or `function` + `calls` ((args tuple, expected return value) pairs)."""

    stdio: tuple[tuple[str, str], ...] = ()
    assert_code: str = ""
    assert_prefix: str = ""
    """Assert-style: the problem's own code the test process runs before the tests (a
    HumanEval prompt's imports and helpers); the names it implements are not forwarded."""
    function: str = ""
    calls: tuple[tuple[tuple[Any, ...], Any], ...] = ()
    accept_unwrapped: bool = False
    """Function-style, the APPS/TACO call-based convention: an expected value that is a
    one-element list also accepts its element (`[5]` accepts a returned `5`)."""

    def __post_init__(self) -> None:
        kinds = [bool(self.stdio), bool(self.assert_code.strip()), bool(self.calls or self.function)]
        if sum(kinds) != 1:
            raise ValueError(
                "CodeTests needs exactly one of stdio=((input, expected_output), ...), "
                "assert_code='assert f(1) == 2', or function='f', calls=(((1,), 2), ...); got "
                f"{len(self.stdio)} stdio cases, {len(self.assert_code)} chars of assert_code, "
                f"function={self.function!r} with {len(self.calls)} calls"
            )
        for index, case in enumerate(self.stdio):
            if len(case) != 2 or not all(isinstance(part, str) for part in case):
                raise ValueError(f"stdio[{index}] must be an (input: str, expected_output: str) pair")
        if kinds[2]:
            if not self.function.isidentifier() or not self.calls:
                raise ValueError(f"function-style tests need a function name and calls; got {self.function!r}, {len(self.calls)} calls")
            for index, call in enumerate(self.calls):
                if len(call) != 2 or not isinstance(call[0], tuple):
                    raise ValueError(f"calls[{index}] must be an (args: tuple, expected) pair")
                try:
                    _value_codec.encode_value(call)
                except TypeError as error:
                    raise ValueError(f"calls[{index}]: {error}") from None


@dataclass(frozen=True)
class CodeResult:
    """Outcome of one solution: score 1.0 only when every case passed."""

    status: CodeStatus
    score: float
    passed_cases: int
    total_cases: int
    detail: str = ""


def sandbox_isolation(isolation: Isolation = "bwrap") -> str:
    """Human-readable description of the isolation `run_code_tests` uses on this machine."""
    if isolation == "none":
        return "NONE (isolation='none'): rlimits and an audit hook only; unsafe for untrusted code"
    plan = sandbox_plan()
    if isinstance(plan, str):
        return f"unavailable: {plan}; {install_hint()}"
    return plan.describe()


def require_sandbox(what: str, isolation: str = "bwrap", fix: str = "") -> None:
    """ConfigError (printed without a traceback) when `what` will run untrusted programs and this
    machine has no sandbox; the message says what is missing, how to install it, and `fix`
    (the caller's opt-out, if it has one). Called where a run is set up, before any model loads."""
    if isolation == "none":
        return
    plan = sandbox_plan()
    if isinstance(plan, str):
        raise ConfigError(
            f"{what} runs the model's programs in the code sandbox, which is unavailable here: {plan}. Install "
            "bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap) and run it again"
            + (f", or {fix}" if fix else "")
        )


def _require_plan(isolation: str) -> SandboxPlan | None:
    if isolation == "none":
        return None
    if isolation != "bwrap":
        raise ValueError(f"isolation={isolation!r}: use 'bwrap' (the default) or 'none' (unsafe)")
    plan = sandbox_plan()
    if isinstance(plan, str):
        raise SandboxUnavailable(f"run_code_tests refuses to run untrusted code: {plan}. To fix: {install_hint()}")
    return plan


@dataclass
class _Run:
    outcome: str  # 'timeout', 'ok', 'failed', 'error ...'
    stdout: str
    stderr: str
    results: dict[int, tuple[str, str]]  # function-style: index -> ('R', json) or ('E', message)


@dataclass
class _Started:
    """A sandboxed harness process that is running, and what the parent holds of it."""

    process: subprocess.Popen
    cgroup: RunCgroup | None
    status_read: int
    nonce: str
    out_path: Path
    err_path: Path

    def stop(self) -> None:
        """SIGKILL the process group and the cgroup; close the status pipe."""
        _kill_group(self.process)
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None
        if self.status_read >= 0:
            os.close(self.status_read)
            self.status_read = -1


def _start(
    plan: SandboxPlan | None,
    workdir: Path,
    mode: str,
    stdin_text: str,
    *,
    function: str,
    timeout_s: float,
    memory_mb: int,
    max_file_bytes: int,
    max_processes: int,
    serve_fds: tuple[int, int] | None = None,
    imports: str = "",
    **_: object,
) -> _Started:
    """Start the harness once in the sandbox (`serve_fds`: the request and reply pipe ends of
    "serve" mode, handed to the child and closed here)."""
    box = workdir / "box"
    stdin_path = workdir / "stdin.txt"
    stdin_path.write_text(stdin_text, encoding="utf-8")
    memory_bytes = memory_mb * 1024 * 1024
    nonce = os.urandom(16).hex()
    nonce_read, nonce_write = os.pipe()
    status_read, status_write = os.pipe()
    os.write(nonce_write, nonce.encode())
    os.close(nonce_write)
    cgroup = None
    seccomp_fd = None
    child_fds = [nonce_read, status_write, *(serve_fds or ())]
    inside = plan is not None
    prefix: list[str] = []
    try:
        if plan is not None:
            cgroup = create_run_cgroup(plan, memory_bytes, max_processes + 3)
            seccomp_fd = seccomp_memfd(plan)
            if seccomp_fd is not None:
                child_fds.append(seccomp_fd)
            prefix = bwrap_command(plan, box=box, memory_bytes=memory_bytes, seccomp_fd=seccomp_fd, cgroup=cgroup)
        config = {
            "mode": mode,
            "box": "/box" if inside else str(box),
            "workdir": "/tmp" if inside else str(box),
            # with a cgroup the memory limit is the tree's (threads are not limited by address
            # space); without one, RLIMIT_AS per process is all there is
            "memory": 0 if cgroup is not None else memory_bytes,
            "cpu": int(timeout_s) + 1,
            "fsize": max_file_bytes,
            # root mode: per host uid (shared by concurrent sandboxes); user namespace: per sandbox
            "nproc": max_processes + 2 if inside else 256,
            "drop_uid": SANDBOX_UID if inside and plan.root_mode else None,
            "audit_hook": not inside,
            "function": function,
            "nonce_fd": nonce_read,
            "status_fd": status_write,
            "request_fd": serve_fds[0] if serve_fds else None,
            "reply_fd": serve_fds[1] if serve_fds else None,
            "imports": imports,
        }
        command = [*prefix, interpreter(), "-I", "-B", "-c", _HARNESS_SOURCE, marshal.dumps(config).hex()]
        out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
        with open(stdin_path, "rb") as stdin, open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen(
                command, stdin=stdin, stdout=out, stderr=err, cwd=box, env={} if inside else _plain_env(box),
                pass_fds=tuple(child_fds), start_new_session=True,
            )  # fmt: skip
    except BaseException:
        os.close(status_read)
        if cgroup is not None:
            cgroup.destroy()
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    return _Started(process, cgroup, status_read, nonce, out_path, err_path)


def _run_once(plan: SandboxPlan | None, workdir: Path, mode: str, stdin_text: str, **limits) -> _Run:
    """Run the harness once and collect what came back."""
    max_output_bytes = limits["max_output_bytes"]
    started = _start(plan, workdir, mode, stdin_text, **limits)
    try:
        status_bytes, timed_out = _collect(started.process, started.status_read, time.monotonic() + limits["timeout_s"],
                                           max(max_output_bytes, 1 << 16))
        oom = started.cgroup is not None and started.cgroup.oom_killed()
    finally:
        started.stop()
    stdout = _read_capped(started.out_path, max_output_bytes)
    stderr = _read_capped(started.err_path, 4000)
    outcome, results = _parse_status(status_bytes.decode("utf-8", errors="replace"), started.nonce)
    if timed_out:
        return _Run("timeout", stdout, stderr, results)
    if outcome is None:
        size = started.out_path.stat().st_size
        why = ("output limit" if size >= max_output_bytes else
               f"the memory limit ({limits['memory_mb']} MB for the process tree)" if oom else
               f"exit code {started.process.returncode}")
        return _Run(f"error no status from the harness ({why})", stdout, stderr, results)
    if _size_over(started.out_path, max_output_bytes):
        return _Run("error output limit", stdout, stderr, results)
    return _Run(outcome, stdout, stderr, results)


def _size_over(path: Path, limit: int) -> bool:
    try:
        return path.stat().st_size > limit
    except OSError:
        return False


def _assert_result(plan: SandboxPlan | None, workdir: Path, tests: CodeTests, limits: dict) -> CodeResult:
    """Assert-style tests: the program in one sandbox ("serve" mode), the tests in a test
    process (`assert_process`) whose stubs call it; the test process writes the verdict."""
    try:
        names, prefix = assert_process.forwarded_names(tests.assert_code, tests.assert_prefix)
        imports = assert_process.imports_of_tests(tests.assert_code)
    except (SyntaxError, ValueError) as error:
        return CodeResult("error", 0.0, 0, 1, f"the tests do not compile: {error}")
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    verdict_read, verdict_write = os.pipe()
    host_fds = [request_write, reply_read, verdict_write]
    started: _Started | None = None
    worker = None
    healthy = False
    deadline = time.monotonic() + limits["timeout_s"]
    try:
        try:
            started = _start(plan, workdir, "serve", "", serve_fds=(request_read, reply_write), imports=imports, **limits)
        except BaseException:
            os.close(request_read)
            os.close(reply_write)
            raise
        try:
            worker = assert_process.acquire(plan, limits["memory_mb"], limits["max_file_bytes"])
            worker.send({"prefix": prefix, "tests": tests.assert_code, "names": list(names), "cpu": int(limits["timeout_s"]) + 2},
                        host_fds)
        except OSError as error:
            return CodeResult("error", 0.0, 0, 1, f"the test process could not be started: {error}")
        finally:
            for fd in host_fds:
                os.close(fd)
            host_fds = []
        verdict, timed_out = _read_until_eof(verdict_read, deadline, 1 << 16)
        oom = started.cgroup is not None and started.cgroup.oom_killed()
        started.stop()
        healthy = worker.wait_done(2.0)
    finally:
        for fd in host_fds:
            os.close(fd)
        os.close(verdict_read)
        if started is not None:
            started.stop()
        if worker is not None:
            assert_process.release(worker, healthy)
    stderr = _read_capped(started.err_path, 4000)
    try:
        body = json.loads(verdict.decode("utf-8"))
        outcome, detail = body["outcome"], body["detail"]
    except (ValueError, KeyError, TypeError):
        if timed_out:
            return CodeResult("timeout", 0.0, 0, 1, "wall-clock limit")
        return CodeResult("error", 0.0, 0, 1, "the test process ended without a verdict (its memory or time limit)")
    if outcome == "ok":
        return CodeResult("passed", 1.0, 1, 1)
    if oom:
        detail += f" (the program hit the memory limit, {limits['memory_mb']} MB for its process tree)"
    if outcome == "failed":
        return CodeResult("failed", 0.0, 0, 1, detail)
    if timed_out:
        return CodeResult("timeout", 0.0, 0, 1, f"wall-clock limit ({detail})")
    return CodeResult("error", 0.0, 0, 1, f"{detail} {stderr[-300:]}".strip())


def _read_until_eof(fd: int, deadline: float, limit: int) -> tuple[bytes, bool]:
    """What a pipe carries until every writer is gone (or `limit` bytes); (bytes, timed out)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _plain_env(box: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(box), "TMPDIR": str(box), "LANG": "C.UTF-8"}


def _collect(process: subprocess.Popen, status_fd: int, deadline: float, limit: int) -> tuple[bytes, bool]:
    """Read the status pipe until every writer is gone, the deadline passes or `limit` bytes
    came; then wait for the process. Returns (status bytes, timed out)."""
    status, timed_out = _read_until_eof(status_fd, deadline, limit)
    if timed_out:
        return status, True
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return status, True
    return status, False


def _parse_status(text: str, nonce: str) -> tuple[str | None, dict[int, tuple[str, str]]]:
    outcome = None
    results: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.startswith(nonce + " "):
            continue
        body = line[len(nonce) + 1 :]
        kind, _, rest = body.partition(" ")
        if kind in ("R", "E"):
            index, _, payload = rest.partition(" ")
            if index.isdigit():
                results.setdefault(int(index), (kind, payload))
        else:
            outcome = body.strip()
    return outcome, results


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _read_capped(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def outputs_match(expected: str, actual: str) -> bool:
    """Line-wise after trailing whitespace is removed, else the same whitespace-split tokens."""

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip().splitlines()]

    return lines(expected) == lines(actual) or expected.split() == actual.split()


def values_match(expected: Any, actual: Any) -> bool:
    """Python equality on plain data, with floats equal within FLOAT_TOLERANCE (NaN == NaN).
    Both sides must be builtins (as `_value_codec.decode_value` makes them)."""
    number = (int, float)
    if isinstance(expected, number) and isinstance(actual, number) and (isinstance(expected, float) or isinstance(actual, float)):
        if math.isnan(expected) or math.isnan(actual):
            return math.isnan(expected) and math.isnan(actual)
        return math.isclose(expected, actual, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return (
            type(expected) is type(actual)
            and len(expected) == len(actual)
            and all(values_match(e, a) for e, a in zip(expected, actual))
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(values_match(expected[k], actual[k]) for k in expected)
    return bool(expected == actual)


def run_code_tests(
    solution: str,
    tests: CodeTests,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 1 << 20,
    stop_at_first_failure: bool = True,
    max_processes: int = 64,
    isolation: Isolation = "bwrap",
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> CodeResult:
    """Run `solution` on `tests` in the sandbox; never raises for anything the solution does.

    timeout_s: wall-clock limit per process (per case for stdio tests; for assert-style
        tests, the program and its tests together).
    memory_mb: memory of the whole process tree (the run's cgroup; threads are not limited
        by address space); where no cgroup can be created, the address-space limit of each
        process (RLIMIT_AS) instead. Also the size cap of the private /tmp.
    max_output_bytes: stdout beyond this is an error.
    max_file_bytes: the largest file the program may write (RLIMIT_FSIZE: its stdout, a
        file in its private /tmp); a write past it fails (EFBIG), usually an error.
    max_processes: processes + threads the tree may have besides the interpreter.
    isolation: "bwrap" (default; raises SandboxUnavailable when it cannot be provided) or
        "none" (UNSAFE: rlimits and an audit hook only, for code you trust).
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s!r} must be positive")
    if memory_mb < 64:
        raise ValueError(f"memory_mb={memory_mb} is too small for a Python interpreter; use >= 64")
    if max_processes < 1:
        raise ValueError(f"max_processes={max_processes} must be >= 1")
    if max_file_bytes < 1:
        raise ValueError(f"max_file_bytes={max_file_bytes} must be >= 1")
    plan = _require_plan(isolation)
    workdir = Path(tempfile.mkdtemp(prefix="delta-sandbox-"))
    box = workdir / "box"
    box.mkdir()
    limits = {
        "function": tests.function,
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
        "max_output_bytes": max_output_bytes,
        "max_file_bytes": max_file_bytes,
        "max_processes": max_processes,
    }
    try:
        (box / "solution.py").write_text(solution, encoding="utf-8")
        if tests.assert_code:
            return _assert_result(plan, workdir, tests, limits)
        if tests.calls:
            calls = [_value_codec.encode_value(args) for args, _ in tests.calls]
            (box / "calls.json").write_text(json.dumps(calls), encoding="utf-8")
            run = _run_once(plan, workdir, "function", "", **limits)
            return _function_result(tests, run, stop_at_first_failure)
        return _stdio_result(plan, workdir, tests, limits, stop_at_first_failure)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stdio_result(plan, workdir, tests: CodeTests, limits: dict, stop_at_first_failure: bool) -> CodeResult:
    passed = 0
    first_problem: tuple[CodeStatus, str] | None = None
    for index, (stdin_text, expected) in enumerate(tests.stdio):
        run = _run_once(plan, workdir, "stdio", stdin_text, **limits)
        if run.outcome == "ok" and outputs_match(expected, run.stdout):
            passed += 1
            continue
        if first_problem is None:
            status: CodeStatus = "timeout" if run.outcome == "timeout" else "failed" if run.outcome == "ok" else "error"
            why = (
                f"case {index}: wrong output {run.stdout[:200]!r}"
                if run.outcome == "ok"
                else f"case {index}: {run.outcome} {run.stderr[-500:]}"
            )
            first_problem = (status, why)
        if stop_at_first_failure:
            break
    total = len(tests.stdio)
    if first_problem is None:
        return CodeResult("passed", 1.0, passed, total)
    return CodeResult(first_problem[0], 0.0, passed, total, first_problem[1])


def _function_result(tests: CodeTests, run: _Run, stop_at_first_failure: bool) -> CodeResult:
    total = len(tests.calls)
    passed = 0
    first_problem: tuple[CodeStatus, str] | None = None
    for index, (args, expected) in enumerate(tests.calls):
        kind, payload = run.results.get(index, ("", ""))
        problem: tuple[CodeStatus, str] | None = None
        if kind == "R":
            try:
                value = _value_codec.loads_value(payload)
            except ValueError as error:
                problem = ("error", f"call {index}: unreadable result ({error})")
            else:
                if not (values_match(expected, value) or _unwrapped_match(tests, expected, value)):
                    problem = ("failed", f"call {index}: {tests.function}{_short(args)} returned {_short(value)}, "
                                         f"expected {_short(expected)}")
        elif kind == "E":
            problem = ("error", f"call {index}: {tests.function}{_short(args)} raised {payload[:300]}")
        elif run.outcome == "timeout":
            problem = ("timeout", f"call {index}: wall-clock limit")
        else:
            why = run.outcome if run.outcome != "ok" else "no result"
            problem = ("error", f"call {index}: {why} {run.stderr[-500:]}".strip())
        if problem is None:
            if first_problem is None or not stop_at_first_failure:
                passed += 1
            continue
        if first_problem is None:
            first_problem = problem
    if first_problem is None and run.outcome not in ("ok",):
        first_problem = ("timeout" if run.outcome == "timeout" else "error", f"after the calls: {run.outcome} {run.stderr[-300:]}")
    if first_problem is None:
        return CodeResult("passed", 1.0, passed, total)
    return CodeResult(first_problem[0], 0.0, passed, total, first_problem[1])


def _unwrapped_match(tests: CodeTests, expected: Any, value: Any) -> bool:
    return tests.accept_unwrapped and isinstance(expected, list) and len(expected) == 1 and values_match(expected[0], value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
