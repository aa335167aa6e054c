"""The test side of assert-style tests: sandboxed test processes, and the names they forward.

Assert-style test code (HumanEval's `check(candidate)`, MBPP's asserts) never runs in the
solution's process: `code_runner` starts the solution in its sandbox in "serve" mode (it runs
the program, then answers calls) and hands the tests to a test process here, in a sandbox of
its own, with the two pipes to the solution and a verdict pipe only the test process holds.

Test processes are long-lived (one per concurrent run, kept in a pool): each is a bubblewrap
sandbox with its own cgroup (memory and pids limits), its own uid in root mode (TEST_UID, not
the solutions' uid), no network, an empty read-only box and a private /tmp, reached through a
unix socket. Per job it forks a fresh child (`_test_harness.py`), so no state of one problem's
tests reaches another's, and a run costs a fork instead of a second sandbox start. A worker
that misbehaves (no "done" after its job, a dead process) is killed and replaced.

`forwarded_names(tests, prefix)` decides which names the stubs stand for: every name the test
code reads that it does not bind itself and that is not a builtin, minus what the problem's
prefix implements. The prefix (a HumanEval prompt: imports and helpers such as `poly`,
`encode_cyclic`) runs in the test process too, from the trusted problem, so a helper the tests
use is the problem's own and not a redefinition by the solution; the prefix's unimplemented
functions (a docstring-only stub: the entry point) are forwarded.
"""

from __future__ import annotations

import ast
import atexit
import builtins
import functools
import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from delta_rlvr.verifiers.sandbox import SandboxPlan, bwrap_command, create_run_cgroup, harness_source, interpreter, seccomp_memfd

TEST_UID = 65533
"""Root mode: the host uid test processes run as (the solutions run as 65534)."""
_HERE = Path(__file__).parent
_TEST_HARNESS_SOURCE = harness_source("_test_harness.py")
_TEST_PIDS = 16  # the worker, one job child at a time, threads the tests may start
_START_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- names


class _Binder(ast.NodeVisitor):
    """Names read and names bound anywhere in a tree (any scope)."""

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        self.bound: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        (self.loaded if isinstance(node.ctx, ast.Load) else self.bound).add(node.id)

    def _named(self, node) -> None:
        self.bound.add(node.name)
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _named

    def visit_arg(self, node: ast.arg) -> None:
        self.bound.add(node.arg)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bound.add(node.name)
        self.generic_visit(node)

    def _imported(self, node) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.bound.add(alias.asname or alias.name.split(".")[0])

    visit_Import = visit_ImportFrom = _imported

    def visit_MatchAs(self, node) -> None:
        if node.name:
            self.bound.add(node.name)
        self.generic_visit(node)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node) -> None:
        if node.rest:
            self.bound.add(node.rest)
        self.generic_visit(node)


def _unimplemented(node: ast.stmt) -> bool:
    """A def whose body is only docstrings, imports, `pass` or `...` (a prompt's stub;
    HumanEval/115's `max_fill` imports math before its docstring)."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    for statement in node.body:
        if isinstance(statement, (ast.Pass, ast.Import, ast.ImportFrom)):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and (
                isinstance(statement.value.value, str) or statement.value.value is Ellipsis):
            continue
        return False
    return True


def _top_level_bindings(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names the module binds at its top level, its unimplemented top-level functions)."""
    bound: set[str] = set()
    stubs: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(statement.name)
            if _unimplemented(statement):
                stubs.add(statement.name)
            continue
        binder = _Binder()
        binder.visit(statement)
        bound |= binder.bound
    return bound, stubs


@functools.lru_cache(maxsize=8192)
def imports_of_tests(tests: str) -> str:
    """The test code's top-level import statements (MBPP's setup code is mostly these). They
    also run in the program's process, after the program, as when program, setup and tests
    shared one namespace: a program may use `math` that the setup imported. Only imports
    cross: no assert, no expected value."""
    tree = ast.parse(tests, "tests.py")
    return "".join(ast.unparse(node) + "\n" for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))


@functools.lru_cache(maxsize=8192)
def forwarded_names(tests: str, prefix: str = "") -> tuple[tuple[str, ...], str]:
    """(the names the tests call on the program, the prefix the test process runs: '' when
    the prefix is not a program by itself). SyntaxError when the tests do not compile."""
    tree = ast.parse(tests, "tests.py")
    binder = _Binder()
    binder.visit(tree)
    free = binder.loaded - binder.bound - set(dir(builtins))
    trusted = ""
    if prefix.strip():
        try:
            prefix_tree = ast.parse(prefix, "prefix.py")
            compile(prefix_tree, "prefix.py", "exec")
        except (SyntaxError, ValueError):
            prefix_tree = None
        if prefix_tree is not None:
            trusted = prefix
            bound, stubs = _top_level_bindings(prefix_tree)
            free -= bound - stubs
    return tuple(sorted(free)), trusted


# --------------------------------------------------------------------------- workers


class TestWorker:
    """One long-lived sandboxed test process behind a unix socket."""

    __test__ = False  # not a pytest class

    def __init__(self, plan: SandboxPlan | None, memory_mb: int, max_file_bytes: int) -> None:
        self.key = (id(plan), memory_mb, max_file_bytes)
        self.box = Path(tempfile.mkdtemp(prefix="delta-test-sandbox-"))
        self.cgroup = None
        self.pid_owner = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.channel = ours
        seccomp_fd = None
        inside = plan is not None
        memory_bytes = memory_mb << 20
        try:
            prefix: list[str] = []
            fds = [theirs.fileno()]
            if plan is not None:
                self.cgroup = create_run_cgroup(plan, memory_bytes, _TEST_PIDS)
                seccomp_fd = seccomp_memfd(plan)
                if seccomp_fd is not None:
                    fds.append(seccomp_fd)
                prefix = bwrap_command(plan, box=self.box, memory_bytes=memory_bytes, seccomp_fd=seccomp_fd,
                                       cgroup=self.cgroup)
            config = {
                "memory": 0 if self.cgroup is not None else memory_bytes,
                "fsize": max_file_bytes,
                "nproc": _TEST_PIDS if inside else 256,
                "drop_uid": TEST_UID if inside and plan.root_mode else None,
                "workdir": "/tmp" if inside else str(self.box),
                "socket_fd": theirs.fileno(),
            }
            env = {} if inside else {"PATH": "/usr/bin:/bin", "HOME": str(self.box), "TMPDIR": str(self.box), "LANG": "C.UTF-8"}
            self.process = subprocess.Popen(
                [*prefix, interpreter(), "-I", "-B", "-c", _TEST_HARNESS_SOURCE, json.dumps(config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.box, env=env,
                pass_fds=tuple(fds), start_new_session=True,
            )  # fmt: skip
        except BaseException:
            self.kill()
            raise
        finally:
            theirs.close()
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        self._buffer = b""

    def send(self, job: dict, fds: list[int]) -> None:
        payload = json.dumps(job).encode("ascii")
        socket.send_fds(self.channel, [f"{len(payload):<16}".encode("ascii")], fds)
        self.channel.sendall(payload)

    def wait_done(self, timeout_s: float) -> bool:
        """True when the worker reported its job's child gone within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.channel], [], [], left)[0]:
                return False
            try:
                chunk = self.channel.recv(4096)
            except OSError:
                return False
            if not chunk:
                return False
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.startswith(b"done ") and not self._buffer

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        process = getattr(self, "process", None)
        if process is not None:
            try:
                os.killpg(process.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        try:
            self.channel.close()
        except OSError:
            pass
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None
        shutil.rmtree(self.box, ignore_errors=True)


_lock = threading.Lock()
_idle: list[TestWorker] = []
_owner = os.getpid()
_spawner: ThreadPoolExecutor | None = None
"""Starts every test worker from one long-lived thread: bwrap's --die-with-parent ends a
sandbox when the *thread* that started it exits, and score_code's threads end with each batch."""


def acquire(plan: SandboxPlan | None, memory_mb: int, max_file_bytes: int) -> TestWorker:
    """An idle test worker of these settings, or a new one (OSError when it cannot start)."""
    global _owner, _spawner
    key = (id(plan), memory_mb, max_file_bytes)
    with _lock:
        if _owner != os.getpid():  # a forked child: the parent's workers and thread are not ours
            _idle.clear()
            _spawner = None
            _owner = os.getpid()
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-worker-spawner")
        spawner = _spawner
        for index, worker in enumerate(_idle):
            if worker.key == key:
                del _idle[index]
                if worker.alive():
                    return worker
                worker.kill()
                break
    return spawner.submit(TestWorker, plan, memory_mb, max_file_bytes).result()


def release(worker: TestWorker, healthy: bool) -> None:
    """Back to the pool after a job whose "done" came, else killed."""
    if healthy and worker.alive() and worker.pid_owner == os.getpid():
        with _lock:
            _idle.append(worker)
        return
    worker.kill()


def shutdown() -> None:
    """Kill every idle test worker (atexit; tests call it to count processes)."""
    with _lock:
        workers = [w for w in _idle if w.pid_owner == os.getpid()]
        _idle.clear()
    for worker in workers:
        worker.kill()


atexit.register(shutdown)
