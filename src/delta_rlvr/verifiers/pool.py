"""A long-lived pool of verifier worker processes with a hard deadline per check.

Why not `multiprocessing.Pool` / `ProcessPoolExecutor`: neither can kill one stuck task and
replace just that worker, and both re-import the caller's `__main__` under spawn/forkserver.
Here each worker slot is one daemon *dispatcher thread* owning one plain subprocess
(`_worker.py`) that speaks JSON lines over its pipes:

- callers from any thread put tasks on one shared queue and wait on futures; dispatchers take
  tasks, send them, and wait for the answer with `select` until the task's deadline;
- past the deadline the worker's process group is SIGKILLed, a fresh worker is started, and
  the task resolves as `timeout`; a worker that dies resolves its task the same way;
- a dispatcher resolves every task it takes, whatever happens (the catch-all is deliberate:
  the trainer must never hang or crash on a verifier), so a caller's wait always ends;
- the default pool is created on first use, reused across calls (a check costs one pipe round
  trip, not a process start), recreated after `fork`, and shut down `atexit`.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded 2-core box can take several seconds


@dataclass(frozen=True)
class CheckOutcome:
    """What a worker said about one (gold, pred) pair."""

    verdict: str  # correct | wrong | unparsed | gold_unparsed | timeout
    detail: str


@dataclass(frozen=True)
class _Task:
    gold: str | list[str]
    pred: str
    timeout_s: float
    future: Future
    mode: str = "extracted"


_STOP = object()


class _WorkerProcess:
    """One worker subprocess and a line buffer over its stdout."""

    def __init__(self, memory_mb: int) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "delta_rlvr.verifiers._worker", str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # own process group: killpg takes anything it spawned
        )
        self._buffer = b""
        self.ready = False

    def read_line(self, deadline: float) -> bytes | None:
        """Next line from the worker, or None at the deadline or when the worker died."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None  # EOF: the worker died
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def wait_ready(self) -> bool:
        line = self.read_line(time.monotonic() + STARTUP_TIMEOUT_S)
        self.ready = line is not None and json.loads(line).get("ready") is True
        return self.ready

    def send(self, payload: dict) -> None:
        self.process.stdin.write((json.dumps(payload) + "\n").encode("utf-8"))
        self.process.stdin.flush()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class VerifierPool:
    """N worker processes behind one task queue; thread-safe; see the module docstring."""

    def __init__(self, num_workers: int | None = None, memory_mb: int = 2048) -> None:
        if num_workers is None:
            num_workers = max(1, min(4, os.cpu_count() or 1))
        if num_workers < 1:
            raise ValueError(f"num_workers={num_workers} must be >= 1")
        self.num_workers = num_workers
        self.memory_mb = memory_mb
        self.pid = os.getpid()
        self.restarts = 0  # workers replaced after a timeout or crash (a health statistic)
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._workers: list[_WorkerProcess | None] = [None] * num_workers
        self._started = [threading.Event() for _ in range(num_workers)]
        self._threads = [
            threading.Thread(target=self._dispatch, args=(slot,), name=f"verifier-{slot}", daemon=True)
            for slot in range(num_workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, gold: str | list[str], pred: str, timeout_s: float, mode: str = "extracted") -> Future:
        """Queue one check (`gold`: one answer or a list meaning any of them; `mode` "free":
        `pred` is a whole response for math-verify's extraction); the future always resolves
        to a `CheckOutcome`."""
        future: Future = Future()
        if self._closed:
            future.set_result(CheckOutcome("timeout", "verifier pool is closed"))
        else:
            self._tasks.put(_Task(gold, pred, timeout_s, future, mode))
        return future

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> bool:
        """Block until every worker has started once (they start eagerly, in the background)."""
        deadline = time.monotonic() + timeout_s
        return all(event.wait(max(0.0, deadline - time.monotonic())) for event in self._started)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for health checks and tests)."""
        return [w.process.pid for w in self._workers if w is not None and w.process.poll() is None]

    def close(self) -> None:
        """Stop the dispatchers after the tasks already queued, then kill the workers."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._tasks.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=10)

    # -- dispatcher side -------------------------------------------------------------------

    def _start_worker(self) -> _WorkerProcess | None:
        try:
            worker = _WorkerProcess(self.memory_mb)
        except OSError:
            return None
        if not worker.wait_ready():
            worker.kill()
            return None
        return worker

    def _dispatch(self, slot: int) -> None:
        worker = self._start_worker()  # eagerly, so the first batch does not pay for imports
        self._workers[slot] = worker
        self._started[slot].set()
        while True:
            task = self._tasks.get()
            if task is _STOP:
                break
            try:
                worker, outcome = self._run(worker, task)
            except Exception as error:  # noqa: BLE001 - a task must always resolve
                outcome = CheckOutcome("timeout", f"verifier pool error {type(error).__name__}: {error}")
                if worker is not None:
                    worker.kill()
                    worker = None
            self._workers[slot] = worker
            if not task.future.done():
                task.future.set_result(outcome)
        if worker is not None:
            worker.kill()
        self._workers[slot] = None

    def _run(self, worker: _WorkerProcess | None, task: _Task) -> tuple[_WorkerProcess | None, CheckOutcome]:
        if worker is None or worker.process.poll() is not None:
            if worker is not None:
                worker.kill()
                self.restarts += 1
            worker = self._start_worker()
            if worker is None:
                return None, CheckOutcome("timeout", "verifier worker failed to start")
        soft_s = max(0.05, min(task.timeout_s * 0.8, task.timeout_s - 0.1))
        request_id = id(task)
        try:
            worker.send({"id": request_id, "gold": task.gold, "pred": task.pred, "soft_s": soft_s, "mode": task.mode})
        except (BrokenPipeError, OSError):
            worker.kill()
            self.restarts += 1
            return None, CheckOutcome("timeout", "verifier worker died before the check")
        line = worker.read_line(time.monotonic() + task.timeout_s)
        if line is None:
            died = worker.process.poll() is not None
            worker.kill()
            self.restarts += 1
            reason = "worker died during the check" if died else f"hard deadline of {task.timeout_s:.2f}s"
            return None, CheckOutcome("timeout", reason)
        reply = json.loads(line)
        if reply.get("id") != request_id:
            worker.kill()
            self.restarts += 1
            return None, CheckOutcome("timeout", "verifier worker answered out of turn")
        return worker, CheckOutcome(reply["verdict"], reply["detail"])


_default_pool: VerifierPool | None = None
_default_lock = threading.Lock()
_default_settings: dict = {}


def default_pool() -> VerifierPool:
    """The process-wide pool, created lazily; a forked child gets its own fresh pool."""
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool.pid != os.getpid() or _default_pool._closed:
            _default_pool = VerifierPool(**_default_settings)
        return _default_pool


def configure_default_pool(num_workers: int | None = None, memory_mb: int = 2048) -> None:
    """Set the default pool's size and per-worker memory limit (restarts it if running)."""
    global _default_pool
    with _default_lock:
        _default_settings.clear()
        _default_settings.update(num_workers=num_workers, memory_mb=memory_mb)
        old, _default_pool = _default_pool, None
    if old is not None and old.pid == os.getpid():
        old.close()


def _shutdown_default_pool() -> None:
    pool = _default_pool
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(_shutdown_default_pool)
