"""Runs inside the sandbox subprocess, before and around the untrusted solution.

The parent passes this file's *source* with `python -I -B -c`, so the sandboxed user never
needs to read the package directory. argv: mode (stdio|assert), sandbox dir, memory bytes, CPU
seconds, output bytes, isolation (mount|none), nonce fd, status fd.

Order matters: limits first, then the read-only filesystem, then the audit hook, then the
solution.
The status line carries a nonce the solution never sees directly, so `os._exit(0)` or
`sys.exit(0)` before the tests cannot fake a pass (it is a guard against reward hacking by
a policy, not a security boundary: code that walks interpreter frames could still find it).
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


_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 1, 2, 4, 8, 32, 4096
_KEEP_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC,
               "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}


def _read_only_filesystem(box):
    """In a private mount namespace: every mount read-only except a bind mount of the box.

    Returns True when all remounts succeeded. Needs CAP_SYS_ADMIN in the mount namespace (root,
    or root of a user namespace); anything else fails quietly and the audit hook remains.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    encoded = box.encode()
    if libc.mount(encoded, encoded, None, _MS_BIND, None) != 0:
        return False
    complete = True
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        entries = [line.split() for line in table]
    for fields in entries:
        point = fields[4].replace("\\040", " ")
        if point == box:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        for option in fields[5].split(","):
            flags |= _KEEP_FLAGS.get(option, 0)
        if libc.mount(None, point.encode(), None, flags, None) != 0:
            complete = False
    return complete


def _main():
    mode, box, memory, cpu, fsize, isolate, nonce_fd, status_fd = sys.argv[1:9]
    memory, cpu, fsize = int(memory), int(cpu), int(fsize)
    nonce_fd, status_fd = int(nonce_fd), int(status_fd)
    _limit(resource.RLIMIT_AS, memory)
    _limit(resource.RLIMIT_CPU, cpu)
    _limit(resource.RLIMIT_FSIZE, fsize)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, 256)  # per real uid; root ignores it (see code_runner)
    if isolate == "mount":
        read_only = _read_only_filesystem(os.path.realpath(box))
        if not read_only:
            print("sandbox: could not make every mount read-only", file=sys.stderr)
        os.chdir(box)  # re-enter through the writable bind mount, not the now read-only original
    nonce = os.read(nonce_fd, 64).decode()
    os.close(nonce_fd)
    status = os.fdopen(status_fd, "w")
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
    }
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

    source = open(os.path.join(box, "solution.py"), encoding="utf-8").read()
    if mode == "assert":
        source += "\n\n" + open(os.path.join(box, "tests.py"), encoding="utf-8").read()
    code = compile(source, "solution.py", "exec")
    sys.addaudithook(hook)
    outcome = "ok"
    try:
        exec(code, {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as stop:
        # A stdin/stdout program may end with sys.exit(0); assert-style code must reach its end.
        if mode == "assert" or stop.code not in (None, 0):
            outcome = "error SystemExit before the tests finished" if mode == "assert" else "error SystemExit"
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


_main()
