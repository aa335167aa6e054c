"""Runs inside the test sandbox: the trusted side of assert-style tests.

The parent (`assert_process.py`) starts this file's source (after `_value_codec.py`'s and `_harness_common.py`'s) with
`python -I -B -c` in its own bubblewrap sandbox, with a unix socket as the only way in. The
process drops root (root mode) to a uid of its own, then serves jobs one at a time: a job is
the problem's trusted code (its prefix and its test code, the names the tests call) and three
descriptors received over the socket: the request pipe to the solution's process, the reply
pipe from it, and the verdict pipe to the parent. For each job it forks; the child runs the
prefix and the tests in a fresh namespace where every name the tests call on the program is a
stub that sends the arguments to the solution's process and rebuilds the reply, plain data,
into fresh builtin objects (`decode_value`), so the comparison in `assert f(x) == y` is
between builtins; then it writes the verdict, one JSON line. The solution's process never has
the tests, this process or the verdict pipe: it only answers calls.

A reply that is not plain data, a SystemExit raised by the program, a reply that cannot be
read or a program that went away marks the run as broken: the verdict is then "failed" or
"error" whatever the tests do with the exception the stub raises (even a bare `except:`).
"""

import builtins
import json
import marshal
import os
import resource
import signal
import socket
import sys
import traceback

_LINE_LIMIT = 1 << 26  # one reply (a returned value) at most 64 MiB of encoded text
_NOT_MAPPED = ("StopIteration", "StopAsyncIteration")  # would silently end a loop or map() of the tests


class _ProgramBroke(BaseException):
    """Raised by a stub when the program's reply is not a return value (BaseException: an
    `except Exception` of the tests cannot swallow it; the run is marked broken anyway)."""


class _ProgramRaised(Exception):
    """The program's function raised an exception that is not a builtin one."""


class _Calls:
    """The request/reply pipes to the solution's process, and what went wrong on them."""

    def __init__(self, request_fd, reply_fd):
        self.requests = os.fdopen(request_fd, "wb")
        self.replies = os.fdopen(reply_fd, "rb")
        self.broken = None  # (outcome, why) once the program stopped being a function
        self.calls = 0

    def line(self):
        line = self.replies.readline(_LINE_LIMIT)
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ValueError(f"a reply longer than {_LINE_LIMIT} bytes")
        return json.loads(line)

    def start(self):
        """None when the program ran, else why not."""
        try:
            first = self.line()
        except (ValueError, RecursionError) as error:
            return f"the program's process sent an unreadable start ({str(error)[:100]})"
        if first is None:
            return "the program's process ended before the tests ran (os._exit, a crash, the memory limit)"
        if first == ["ready"]:
            return None
        if isinstance(first, list) and len(first) == 2 and first[0] == "fail" and isinstance(first[1], str):
            return f"the program failed before the tests ran: {first[1][:400]}"
        return "the program's process sent an unreadable start"

    def fail(self, outcome, why):
        if self.broken is None:
            self.broken = (outcome, why)
        raise _ProgramBroke(why)

    def call(self, name, args, kwargs):
        if self.broken is not None:
            raise _ProgramBroke(self.broken[1])
        self.calls += 1
        try:
            request = marshal.dumps([name, encode_value(args), encode_value(kwargs)])  # noqa: F821 - from _value_codec.py
        except (TypeError, ValueError) as error:
            self.fail("error", f"the tests pass {name} an argument that cannot reach the program's process ({error})")
        try:
            self.requests.write(len(request).to_bytes(8, "big") + request)
            self.requests.flush()
            reply = self.line()
        except (OSError, ValueError, RecursionError) as error:
            self.fail("error", f"call {self.calls} of {name}: the program's process broke the call ({str(error)[:100]})")
        if reply is None:
            self.fail("error", f"call {self.calls} of {name}: the program's process ended (os._exit, a crash, the memory limit)")
        if not isinstance(reply, list) or not reply or (reply[0] != "R" and not all(isinstance(part, str) for part in reply)):
            self.fail("error", f"call {self.calls} of {name}: an unreadable reply")
        kind = reply[0]
        if kind == "R" and len(reply) == 2:
            try:
                return decode_value(reply[1])  # noqa: F821 - from _value_codec.py
            except (ValueError, RecursionError) as error:
                self.fail("error", f"call {self.calls} of {name}: an unreadable value ({str(error)[:100]})")
        if kind == "N" and len(reply) == 2:
            self.fail("failed", f"call {self.calls}: {reply[1][:300]}")
        if kind == "X" and len(reply) == 3:
            self.fail("error", f"call {self.calls}: {name} raised {reply[1]} ({reply[2][:200]}) instead of returning")
        if kind == "E" and len(reply) == 3:
            kind_name, message = reply[1], reply[2]
            builtin = getattr(builtins, kind_name, None) if kind_name.isidentifier() else None
            if (isinstance(builtin, type) and issubclass(builtin, Exception) and kind_name not in _NOT_MAPPED
                    and not issubclass(builtin, Warning)):
                try:
                    error = builtin(message)
                except Exception:  # noqa: BLE001 - a builtin exception with required arguments
                    error = _ProgramRaised(f"{kind_name}: {message}")
            else:
                error = _ProgramRaised(f"{kind_name}: {message}")
            raise error
        self.fail("error", f"call {self.calls} of {name}: an unreadable reply")


def _stub(calls, name):
    def stub(*args, **kwargs):
        return calls.call(name, args, kwargs)

    stub.__name__ = stub.__qualname__ = name
    return stub


def _where(error):
    """'line N: <source line>' of the innermost frame in the tests."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename == "tests.py":
            return f"line {frame.lineno}: {(frame.line or '').strip()[:200]}"
    return ""


def _run_job(job, request_fd, reply_fd, verdict_fd):
    """The child: run the tests against the program; write the verdict."""
    verdict = os.fdopen(verdict_fd, "w", encoding="utf-8")
    signal.alarm(int(job["cpu"]))  # default action: the child ends (the parent still says done)
    _limit(resource.RLIMIT_CPU, int(job["cpu"]))
    calls = _Calls(request_fd, reply_fd)
    outcome, detail = "ok", ""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        if job["prefix"]:
            exec(compile(job["prefix"], "prefix.py", "exec"), namespace)
        tests = compile(job["tests"], "tests.py", "exec")
        why = calls.start()
        if why is not None:
            outcome, detail = "error", why
        else:
            for name in job["names"]:
                namespace[name] = _stub(calls, name)
            exec(tests, namespace)
    except _ProgramBroke:
        pass
    except AssertionError as error:
        outcome, detail = "failed", f"assertion failed at {_where(error)}" + (f": {str(error)[:200]}" if str(error) else "")
    except BaseException as error:  # noqa: BLE001 - the tests raised (often because the program's value was wrong)
        outcome, detail = "error", f"{type(error).__name__}: {str(error)[:300]}" + (f" at {_where(error)}" if _where(error) else "")
    if calls.broken is not None:
        outcome, detail = calls.broken
    elif outcome == "ok" and not calls.calls and job["names"]:
        outcome, detail = "error", "the tests never called the program"
    try:
        verdict.write(json.dumps({"outcome": outcome, "detail": detail, "calls": calls.calls}) + "\n")
        verdict.flush()
    except OSError:
        pass  # the parent stopped listening (its deadline passed)
    os._exit(0)


def _receive(channel):
    """One job and its three descriptors, or None when the parent is gone."""
    header, fds, _, _ = socket.recv_fds(channel, 16, 3)
    if not header:
        return None
    size = int(header.decode("ascii").strip())
    chunks, left = [], size
    while left:
        chunk = channel.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return json.loads(b"".join(chunks)), fds


def _main():
    config = json.loads(sys.argv[1])
    if config["memory"]:  # no cgroup: the per-process address-space limit is the only one
        _limit(resource.RLIMIT_AS, config["memory"])
    _limit(resource.RLIMIT_FSIZE, config["fsize"])
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, config["nproc"])
    channel = socket.socket(fileno=config["socket_fd"])
    if config["drop_uid"] is not None:
        _drop_root(config["drop_uid"])
    os.chdir(config["workdir"])
    while True:
        received = _receive(channel)
        if received is None:
            os._exit(0)
        job, fds = received
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            os._exit(3)
        child = os.fork()
        if child == 0:
            try:
                channel.close()
                _run_job(job, *fds)
            finally:
                os._exit(1)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(child, 0)
        channel.sendall(f"done {status}\n".encode("ascii"))


_main()
