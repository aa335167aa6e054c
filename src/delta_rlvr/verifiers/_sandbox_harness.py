"""Runs inside the sandbox, before and around the untrusted solution.

The parent passes `_value_codec.py` + this file's *source* with `python -I -B -c`, so the sandbox
never needs the package directory. argv[1] is a JSON config: mode (stdio|assert|function), box
(where solution.py, tests.py, calls.json are; read-only in the sandbox), workdir (the cwd),
memory/cpu/fsize/nproc limits, drop_uid (root mode: the uid to become before the solution is
read), audit_hook (isolation="none" only), function name, nonce_fd, status_fd.

Order matters: limits, read the inputs, drop root, then the solution.

The status pipe carries lines `<nonce> <word> ...`: the nonce, read from a pipe the solution
never sees directly, marks that the harness (not a premature `sys.exit(0)`) wrote the status.
It is a guard against accidents, not a boundary: code running in this process can find the
nonce and the pipe (walking frames, reading /proc/self/fd) and write any status. That is why
function-style results are compared in the parent, and stdio output too; only assert-style
tests (which run here) can be forged.
"""

import builtins
import os
import resource
import sys
import traceback  # imported before the solution runs: it may exhaust memory or break imports


def _limit(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass


def _drop_root(uid):
    """Become `uid` with no groups; setresuid from root to non-root clears every capability."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    with open("/proc/self/status", encoding="ascii") as handle:
        status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
    for key in ("CapPrm", "CapEff", "CapAmb"):
        if int(status[key], 16) != 0:
            raise SystemExit(f"sandbox: capabilities left after dropping root: {key} {status[key].strip()}")
    if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
        raise SystemExit("sandbox: could not drop root")


def _install_audit_hook(box):
    """isolation='none' only: refuse sockets, subprocesses and writes outside `box` (ctypes can
    bypass all of this; it stops accidents, not an attacker)."""
    box = os.path.realpath(box) + os.sep

    def inside(path):
        if isinstance(path, int):
            return True  # an already-open descriptor
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return os.path.realpath(os.path.join(box, path)).startswith(box)

    writes = ("w", "a", "x", "+")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    path_events = {
        "os.remove", "os.rmdir", "os.rename", "os.chmod", "os.chown", "os.truncate",
        "os.symlink", "os.link", "os.mkdir", "shutil.rmtree", "os.utime",
    }  # fmt: skip
    blocked = ("socket.", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn")

    def hook(event, args):
        if event.startswith(blocked):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args and args[0] is not None:
            mode_arg, flags = args[1], args[2] if len(args) > 2 else 0
            writing = (isinstance(mode_arg, str) and any(c in mode_arg for c in writes)) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not inside(args[0]):
                raise PermissionError(f"sandbox: writing {args[0]!r} outside the sandbox dir")
        elif event in path_events:
            for path in args[:2]:
                if isinstance(path, (str, bytes)) and not inside(path):
                    raise PermissionError(f"sandbox: {event} on {path!r} outside the sandbox dir")

    sys.addaudithook(hook)


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _main():
    config = json.loads(sys.argv[1])
    mode, box = config["mode"], config["box"]
    _limit(resource.RLIMIT_AS, config["memory"])
    _limit(resource.RLIMIT_CPU, config["cpu"])
    _limit(resource.RLIMIT_FSIZE, config["fsize"])
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, config["nproc"])
    source = _read(os.path.join(box, "solution.py"))
    if mode == "assert":
        source += "\n\n" + _read(os.path.join(box, "tests.py"))
    calls = json.loads(_read(os.path.join(box, "calls.json"))) if mode == "function" else []
    nonce = os.read(config["nonce_fd"], 64).decode()
    os.close(config["nonce_fd"])
    status = os.fdopen(config["status_fd"], "w")
    if config["drop_uid"] is not None:
        _drop_root(config["drop_uid"])
    os.chdir(config["workdir"])
    if config["audit_hook"]:
        _install_audit_hook(config["workdir"])
    code = compile(source, "solution.py", "exec")
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    outcome = "ok"
    try:
        exec(code, namespace)
        if mode == "function":
            _call_each(namespace, config["function"], calls, nonce, status)
    except SystemExit as stop:
        # A stdin/stdout program may end with sys.exit(0); assert-style code must reach its end.
        if mode != "stdio" or stop.code not in (None, 0):
            outcome = "error SystemExit" if mode == "stdio" else "error SystemExit before the tests finished"
    except AssertionError:
        outcome = "failed"
    except BaseException as error:  # noqa: BLE001 - report any failure of untrusted code
        outcome = f"error {type(error).__name__}: {str(error)[:200]}"
        traceback.print_exc()
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001 - output limit hit while flushing
        outcome = "error output limit"
    status.write(f"{nonce} {outcome}\n")
    status.flush()
    os._exit(0)


def _call_each(namespace, name, calls, nonce, status):
    """Call the solution's function on each argument tuple; report each value as plain data."""
    function = namespace.get(name)
    if not callable(function):
        raise NameError(f"the solution defines no function {name!r}")
    for index, encoded in enumerate(calls):
        args = decode_value(encoded)  # noqa: F821 - defined by _value_codec.py, prepended
        try:
            line = f"R {index} " + dumps_value(function(*args))  # noqa: F821
        except SystemExit:
            raise
        except BaseException as error:  # noqa: BLE001 - one failing call is one failed case
            line = f"E {index} {type(error).__name__}: {str(error)[:200]!r}"
        status.write(f"{nonce} {line}\n")
        status.flush()


_main()
