"""Runs inside the sandbox, before and around the untrusted solution.

The parent passes `_value_codec.py` + this file's *source* with `python -I -B -c`, so the sandbox
never needs the package directory. argv[1] is the config, `marshal` bytes in hex (the parent's,
trusted; marshal is built in, json would cost a start-up import): mode (stdio|function|serve), box
(where solution.py and calls.json are; read-only in the sandbox), workdir (the cwd),
memory (0: none, the cgroup limits the tree)/cpu/fsize/nproc limits, drop_uid (root mode: the
uid to become before the solution is read), audit_hook (isolation="none" only), function name,
nonce_fd, status_fd, and for "serve" request_fd/reply_fd and imports (the tests' import
statements, run after the program).

Order matters: limits, read the inputs, drop root, then the solution.

The status pipe carries lines `<nonce> <word> ...`: the nonce, read from a pipe the solution
never sees directly, marks that the harness (not a premature `sys.exit(0)`) wrote the status.
It is a guard against accidents, not a boundary: code running in this process can find the
nonce and the pipe (walking frames, reading /proc/self/fd) and write any status. That is why
nothing decided here is trusted: function-style results and stdio output are compared in the
parent, and in "serve" mode (assert-style tests) the tests run in another sandboxed process
(`_test_harness.py`) that sends each call here as a request line and compares the reply, plain
data, itself. No test code, expected value or verdict channel is ever in this process.
"""

import builtins
import marshal
import os
import resource
import sys

traceback = None  # imported by _main before the solution runs (it may exhaust memory or break imports); not in serve mode


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
    global traceback
    config = marshal.loads(bytes.fromhex(sys.argv[1]))
    mode, box = config["mode"], config["box"]
    if mode != "serve":
        import json  # noqa: F401 - for dumps_value, before the solution runs
        import traceback
    if config["memory"]:  # no cgroup: the per-process address-space limit is the only one
        _limit(resource.RLIMIT_AS, config["memory"])
    _limit(resource.RLIMIT_CPU, config["cpu"])
    _limit(resource.RLIMIT_FSIZE, config["fsize"])
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, config["nproc"])
    source = _read(os.path.join(box, "solution.py"))
    calls = sys.modules["json"].loads(_read(os.path.join(box, "calls.json"))) if mode == "function" else []
    nonce = os.read(config["nonce_fd"], 64).decode()
    os.close(config["nonce_fd"])
    status = os.fdopen(config["status_fd"], "w")
    if config["drop_uid"] is not None:
        _drop_root(config["drop_uid"])
    os.chdir(config["workdir"])
    if config["audit_hook"]:
        _install_audit_hook(config["workdir"])
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    if mode == "serve":
        _serve(source, namespace, config)  # never returns
    code = compile(source, "solution.py", "exec")
    outcome = "ok"
    try:
        exec(code, namespace)
        if mode == "function":
            _call_each(namespace, config["function"], calls, nonce, status)
    except SystemExit as stop:
        # A stdin/stdout program may end with sys.exit(0); function-style code must reach its end.
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


def _serve(source, namespace, config):
    """Assert-style tests: run the program, say whether it ran, then answer call requests
    (`[name, args, kwargs]` in the codec's tagged form, as marshal bytes behind an 8-byte
    length; marshal only reads what the trusted test process wrote) with one JSON line each:
    ["R", value] | ["E", type, message] (an exception) | ["X", type, message] (a BaseException
    that is not an Exception: SystemExit, KeyboardInterrupt) | ["N", why] (the value is not
    plain data). Ends when the test process closes the request pipe. Whatever the program
    writes here only decides its own answers: the tests compare them elsewhere."""
    requests = os.fdopen(config["request_fd"], "rb")
    replies = os.fdopen(config["reply_fd"], "w", encoding="ascii")

    def reply(message):
        replies.write(_json(message) + "\n")
        replies.flush()

    try:
        exec(compile(source, "solution.py", "exec"), namespace)
        if config["imports"]:  # the tests' imports, as if program, setup and tests shared a namespace
            exec(compile(config["imports"], "test-imports.py", "exec"), namespace)
    except SystemExit:
        reply(["fail", "SystemExit: the program exited before the tests ran"])
        os._exit(0)
    except BaseException as error:  # noqa: BLE001 - report any failure of untrusted code
        reply(["fail", f"{type(error).__name__}: {str(error)[:300]}"])  # a SyntaxError names its line
        os._exit(0)
    reply(["ready"])
    while True:
        header = requests.read(8)
        if len(header) < 8:
            os._exit(0)
        name, args, kwargs = marshal.loads(requests.read(int.from_bytes(header, "big")))
        function = namespace.get(name)
        if not callable(function):
            reply(["E", "NameError", f"name {name!r} is not defined by the program"])
            continue
        try:
            value = function(*decode_value(args), **decode_value(kwargs))  # noqa: F821 - from _value_codec.py
        except Exception as error:  # noqa: BLE001 - the call raised: the tests may expect it
            reply(["E", type(error).__name__, str(error)[:300]])
            continue
        except BaseException as error:  # noqa: BLE001 - SystemExit etc.: never a result
            reply(["X", type(error).__name__, str(error)[:300]])
            continue
        try:
            tree = encode_value(value)  # noqa: F821 - from _value_codec.py
        except BaseException as error:  # noqa: BLE001 - a hostile __iter__/__int__, too deep, not plain data
            reply(["N", f"{name} returned {_kind(value)}, which is not plain data ({type(error).__name__}: {str(error)[:200]})"])
            continue
        reply(["R", tree])


_ESCAPES = {code: f"\\u{code:04x}" for code in range(32)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", 127: "\\u007f"})


def _json(tree):
    """JSON text (ASCII) of a tree of lists, str and bool, without importing json."""
    if tree is True:
        return "true"
    if tree is False:
        return "false"
    if type(tree) is str:
        if tree.isascii():
            return '"' + tree.translate(_ESCAPES) + '"'
        parts = []
        for char in tree:
            code = ord(char)
            if code < 128:
                parts.append(char.translate(_ESCAPES))
            elif code < 0x10000:
                parts.append(f"\\u{code:04x}")
            else:
                code -= 0x10000
                parts.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        return '"' + "".join(parts) + '"'
    return "[" + ",".join(_json(item) for item in tree) + "]"


def _kind(value):
    try:
        return "a " + type(value).__name__
    except BaseException:  # noqa: BLE001 - nothing about a hostile object is trusted
        return "a value"


_main()
