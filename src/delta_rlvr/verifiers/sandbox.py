"""The kernel isolation behind `run_code_tests`: bubblewrap, a tree-wide cgroup, seccomp.

What a sandboxed program gets (both modes below):
- its own pid, network, ipc, uts, mount (and, where possible, cgroup) namespaces; a fresh
  /proc that shows only its own pid namespace; a network namespace with only a down loopback;
- a new root holding read-only binds of /usr (with the /bin, /lib... links of the host), a few
  /etc files the dynamic loader reads, the interpreter's prefix and the virtualenv; a private
  /tmp (tmpfs, at most `memory_mb`) as its working directory; a minimal /dev; nothing else of
  the host (no /home, /root, /run, /var, no host /tmp, so no host unix socket is reachable);
- an empty environment (PATH, HOME, TMPDIR, LANG only), a new session (no TIOCSTI into a
  terminal), `no_new_privs`, no capabilities, the seccomp filter of `seccomp.py`;
- memory and process limits on the whole process tree: a cgroup (v1 memory + pids, or v2)
  created per run where this process may create one, else RLIMIT_NPROC.

Two modes, chosen by who calls:
- root: bwrap runs as root without a user namespace and hands the harness only CAP_SETUID and
  CAP_SETGID; the harness, before it reads the solution, drops to host uid/gid 65534 (nobody)
  with no supplementary groups, which clears every capability. The program is then an
  ordinary unprivileged host uid: RLIMIT_NPROC applies to it (root is exempt), it owns no host
  file, and user namespaces are denied by seccomp.
- any other uid: bwrap creates a user namespace (unprivileged user namespaces must be enabled)
  mapping the caller's uid to 65534 inside, with `--disable-userns` where bwrap has it.

`sandbox_plan()` probes once per process: a real sandboxed run of the interpreter with the
full configuration. When it fails, `run_code_tests` refuses (SandboxUnavailable) with what to
install or enable, unless the caller passes isolation="none".
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from delta_rlvr.verifiers import seccomp

SANDBOX_UID = 65534  # nobody / nogroup inside the sandbox (and on the host in root mode)
_CGROUP_PREFIX = "delta-sandbox-"


# --------------------------------------------------------------------------- cgroups


@dataclass(frozen=True)
class CgroupParents:
    """Where per-run cgroups are created: one directory per hierarchy (v1) or one (v2)."""

    version: int
    memory: Path
    pids: Path

    def describe(self) -> str:
        if self.version == 1:
            return f"cgroup v1 (memory under {self.memory}, pids under {self.pids})"
        return f"cgroup v2 under {self.memory}"


@dataclass
class RunCgroup:
    dirs: tuple[Path, ...]
    version: int

    @property
    def procs_files(self) -> tuple[str, ...]:
        return tuple(str(path / "cgroup.procs") for path in self.dirs)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.dirs:
            try:
                found.update(int(line) for line in (path / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return found

    def peak_memory_bytes(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        for path in self.dirs:
            try:
                return int((path / name).read_text())
            except (OSError, ValueError):
                continue
        return None

    def oom_killed(self) -> bool:
        """True when the kernel killed a process of this cgroup for its memory limit."""
        for path in self.dirs:
            for name in ("memory.oom_control", "memory.events"):  # v1, v2
                try:
                    text = (path / name).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                        return True
        return False

    def destroy(self) -> None:
        """SIGKILL whatever is left in the cgroup, then remove it (waits up to ~2 s)."""
        deadline = time.monotonic() + 2.0
        while True:
            left = self.pids()
            for pid in left:
                try:
                    os.kill(pid, 9)
                except (ProcessLookupError, PermissionError):
                    pass
            removed = True
            for path in self.dirs:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    removed = False
            if removed or time.monotonic() > deadline:
                return
            time.sleep(0.002)  # bwrap's inner processes die (PDEATHSIG) just after the outer one


_counter = itertools.count()
_counter_lock = threading.Lock()


def _own_cgroup_paths() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


def _cgroup_mounts() -> dict[str, str]:
    """controller -> mount point for v1 hierarchies, '' -> mount point of the cgroup2 mount."""
    mounts: dict[str, str] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        if tail[0] == "cgroup2":
            mounts.setdefault("", point)
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("memory", "pids"):
                    mounts.setdefault(option, point)
    return mounts


def _try_parent(candidate: CgroupParents) -> CgroupParents | None:
    """Create and remove a probe child with limits written, to know the parent really works."""
    probe = RunCgroup((), candidate.version)
    try:
        probe = _create_in(candidate, 64 << 20, 8, tag="probe")
    except OSError:
        return None
    finally:
        probe.destroy()
    return candidate


def _create_in(parents: CgroupParents, memory_bytes: int, max_pids: int, tag: str = "") -> RunCgroup:
    with _counter_lock:
        number = next(_counter)
    name = f"{_CGROUP_PREFIX}{os.getpid()}-{number}{tag}"
    dirs: list[Path] = []
    run = RunCgroup((), parents.version)
    try:
        if parents.version == 1:
            memory, pids = parents.memory / name, parents.pids / name
            memory.mkdir()
            dirs.append(memory)
            pids.mkdir()
            dirs.append(pids)
            run = RunCgroup(tuple(dirs), 1)
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(memory_bytes))
            (pids / "pids.max").write_text(str(max_pids))
        else:
            path = parents.memory / name
            path.mkdir()
            dirs.append(path)
            run = RunCgroup(tuple(dirs), 2)
            (path / "memory.max").write_text(str(memory_bytes))
            swap = path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
            (path / "pids.max").write_text(str(max_pids))
    except OSError:
        RunCgroup(tuple(dirs), parents.version).destroy()
        raise
    return run


def _remove_stale(parent: Path) -> None:
    """Remove per-run cgroups left behind by processes that died (empty dirs only)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_CGROUP_PREFIX):
            continue
        owner = entry.name[len(_CGROUP_PREFIX) :].split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            try:
                entry.rmdir()
            except OSError:
                pass


@functools.cache
def cgroup_parents() -> CgroupParents | None:
    """Where this process can create memory+pids cgroups for its sandboxes, or None.

    DELTA_SANDBOX_CGROUP=/sys/fs/cgroup/<delegated dir> names a cgroup v2 directory (with the
    memory and pids controllers in its subtree_control) for callers without root.
    """
    override = os.environ.get("DELTA_SANDBOX_CGROUP")
    if override:
        return _try_parent(CgroupParents(2, Path(override), Path(override)))
    mounts, own = _cgroup_mounts(), _own_cgroup_paths()
    if "memory" in mounts and "pids" in mounts and "memory" in own and "pids" in own:
        memory = Path(mounts["memory"] + own["memory"].rstrip("/"))
        pids = Path(mounts["pids"] + own["pids"].rstrip("/"))
        _remove_stale(memory)
        _remove_stale(pids)
        found = _try_parent(CgroupParents(1, memory, pids))
        if found:
            return found
    if "" in mounts and "" in own:
        path = Path(mounts[""] + own[""].rstrip("/"))
        try:
            enabled = (path / "cgroup.subtree_control").read_text().split()
        except OSError:
            enabled = []
        if "memory" in enabled and "pids" in enabled:
            _remove_stale(path)
            return _try_parent(CgroupParents(2, path, path))
    return None


# --------------------------------------------------------------------------- bubblewrap


@dataclass(frozen=True)
class SandboxPlan:
    """How sandboxes are started on this machine (found once by `sandbox_plan`)."""

    bwrap: str
    version: str
    root_mode: bool  # bwrap as root, harness drops to host uid 65534
    seccomp_filter: bytes | None
    cgroups: CgroupParents | None
    ro_binds: tuple[str, ...]
    symlinks: tuple[tuple[str, str], ...]
    options: frozenset[str]  # bwrap options this version knows

    def describe(self) -> str:
        who = (
            f"host uid {SANDBOX_UID} (bwrap as root, the harness drops root before the solution runs)"
            if self.root_mode
            else f"uid {SANDBOX_UID} in a user namespace (caller uid {os.getuid()} outside)"
        )
        filt = (
            f"seccomp on {seccomp.supported_arch()} ({len(seccomp.denied_syscalls())} syscalls denied, clone with CLONE_NEW*)"
            if self.seccomp_filter
            else "no seccomp filter (architecture not supported)"
        )
        limits = (
            f"memory and process limits on the whole tree by {self.cgroups.describe()}"
            if self.cgroups
            else "process limit by RLIMIT_NPROC; memory only per process (RLIMIT_AS, which also limits threads): "
            "no cgroup could be created"
        )
        return (
            f"bubblewrap {self.version}: {who}, no capabilities, no_new_privs, {filt}; "
            "pid+net+ipc+uts+mount namespaces, fresh /proc, no host sockets or environment, "
            f"read-only {', '.join(self.ro_binds)}, private /tmp; {limits}"
        )


def interpreter() -> str:
    """This Python's path with `..` and `.` resolved: inside the sandbox only the interpreter's
    and the venv's folders exist, so a path through another folder (`tests/../.venv/bin/python`,
    from a relative invocation) would not."""
    return os.path.abspath(sys.executable)


def _python_roots() -> list[str]:
    """Directories the interpreter needs: its base prefix, the venv, the real executable's dir."""
    roots: list[str] = []
    candidates = [sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix]
    candidates.append(str(Path(os.path.realpath(sys.executable)).parent.parent))
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real in ("/", "") or not os.path.isdir(real):
            continue
        if any(real == root or real.startswith(root + os.sep) for root in roots):
            continue
        roots = [root for root in roots if not root.startswith(real + os.sep)]
        roots.append(real)
    # the unresolved venv path too, when it differs (its bin/python symlink chain must resolve)
    for candidate in (sys.prefix,):
        if os.path.realpath(candidate) != candidate and os.path.isdir(candidate):
            roots.append(candidate)
    return roots


def _filesystem_layout() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    binds: list[str] = ["/usr"]
    symlinks: list[tuple[str, str]] = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            symlinks.append((os.readlink(top), top))
        elif os.path.isdir(top):
            binds.append(top)
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives"):
        if os.path.exists(path):
            binds.append(path)
    for root in _python_roots():
        if not any(root == bind or root.startswith(bind + os.sep) for bind in binds):
            binds.append(root)
    return tuple(binds), tuple(symlinks)


def _bwrap_options(bwrap: str) -> frozenset[str]:
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(word for word in text.split() if word.startswith("--"))


def install_hint() -> str:
    return (
        "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install "
        "bubblewrap`; `make install` does it when run as root), or pass isolation='none' to run "
        "untrusted code without a sandbox (unsafe: only for code you trust)"
    )


def bwrap_command(
    plan: SandboxPlan,
    *,
    box: Path,
    memory_bytes: int,
    seccomp_fd: int | None,
    cgroup: RunCgroup | None,
) -> list[str]:
    """argv that runs the rest of a command line inside the sandbox."""
    command: list[str] = []
    if cgroup is not None:
        # join the run's cgroups before bwrap forks anything, then exec bwrap in place
        script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'
        command += ["/bin/sh", "-c", script, "sh", str(len(cgroup.procs_files)), *cgroup.procs_files]
    command += [plan.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    if "--unshare-cgroup-try" in plan.options:
        command.append("--unshare-cgroup-try")
    if plan.root_mode:
        command += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        if "--disable-userns" in plan.options:
            command.append("--disable-userns")
    command += ["--die-with-parent", "--new-session", "--clearenv", "--hostname", "sandbox"]
    for key, value in (("PATH", "/usr/bin:/bin"), ("HOME", "/tmp"), ("TMPDIR", "/tmp"), ("LANG", "C.UTF-8")):
        command += ["--setenv", key, value]
    # The scratch mounts come first, so that read-only binds beneath them (a venv or checkout
    # under /tmp) are mounted on top of the private tmpfs rather than hidden by it.
    command += ["--proc", "/proc", "--dev", "/dev"]
    for scratch in ("/dev/shm", "/tmp"):  # /dev/shm: multiprocessing's semaphores
        if "--perms" in plan.options:
            command += ["--perms", "1777"]  # root mode: writable for uid 65534 (owned by root)
        if "--size" in plan.options:
            command += ["--size", str(memory_bytes)]
        command += ["--tmpfs", scratch]
    # bwrap creates missing parents of a mount point with mode 0700: a pyenv interpreter under
    # /root (or a venv under a home dir) would be unreachable for uid 65534, so make them 0755
    parents: set[str] = set()
    for path in plan.ro_binds:
        parent = os.path.dirname(path)
        while parent not in ("/", "") and parent not in plan.ro_binds:
            parents.add(parent)
            parent = os.path.dirname(parent)
    for parent in sorted(parents, key=lambda p: (p.count("/"), p)):
        command += (["--perms", "0755"] if "--perms" in plan.options else []) + ["--dir", parent]
    for path in plan.ro_binds:
        command += ["--ro-bind", path, path]
    for target, link in plan.symlinks:
        command += ["--symlink", target, link]
    command += ["--ro-bind", str(box), "/box", "--remount-ro", "/", "--chdir", "/tmp"]
    if seccomp_fd is not None:
        command += ["--seccomp", str(seccomp_fd)]
    command.append("--")
    return command


def seccomp_memfd(plan: SandboxPlan) -> int | None:
    """A fresh descriptor holding the compiled filter (bwrap reads it to the end)."""
    if plan.seccomp_filter is None:
        return None
    fd = os.memfd_create("delta-sandbox-seccomp", 0)
    os.write(fd, plan.seccomp_filter)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


_plan_lock = threading.Lock()
_plan_cache: list[SandboxPlan | str] = []


def sandbox_plan() -> SandboxPlan | str:
    """The working sandbox configuration, or a sentence saying why there is none (cached)."""
    with _plan_lock:
        if not _plan_cache:
            _plan_cache.append(_find_plan())
        return _plan_cache[0]


def _find_plan() -> SandboxPlan | str:
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    bwrap = shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.split()[-1]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        version = "(unknown version)"
    binds, symlinks = _filesystem_layout()
    plan = SandboxPlan(
        bwrap=bwrap,
        version=version,
        root_mode=os.geteuid() == 0,
        seccomp_filter=seccomp.build_filter(),
        cgroups=cgroup_parents(),
        ro_binds=binds,
        symlinks=symlinks,
        options=_bwrap_options(bwrap),
    )
    problem = _probe(plan)
    return plan if problem is None else problem


_PROBE_SOURCE = """
import os, sys
os.setgroups([]) if {drop} else None
os.setresgid({uid}, {uid}, {uid}) if {drop} else None
os.setresuid({uid}, {uid}, {uid}) if {drop} else None
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
assert status['CapEff'].strip() == '0' * 16, status['CapEff']
assert status['NoNewPrivs'].strip() == '1'
assert os.getuid() == {uid}, os.getuid()
print('sandbox-ok')
"""


def _probe(plan: SandboxPlan) -> str | None:
    """Run the interpreter once in the full sandbox; None when it works, else the reason."""
    import tempfile

    box = Path(tempfile.mkdtemp(prefix="delta-sandbox-probe-"))
    cgroup = None
    seccomp_fd = None
    try:
        if plan.cgroups is not None:
            cgroup = _create_in(plan.cgroups, 256 << 20, 16)
        seccomp_fd = seccomp_memfd(plan)
        source = _PROBE_SOURCE.format(drop=plan.root_mode, uid=SANDBOX_UID)
        command = bwrap_command(plan, box=box, memory_bytes=64 << 20, seccomp_fd=seccomp_fd, cgroup=cgroup)
        command += [interpreter(), "-I", "-B", "-c", source]
        fds = () if seccomp_fd is None else (seccomp_fd,)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30, env={}, pass_fds=fds)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bubblewrap could not be started: {error}"
        if result.returncode == 0 and "sandbox-ok" in result.stdout:
            return None
        why = (result.stderr or result.stdout).strip()[-600:]
        if not plan.root_mode:
            why += (
                " (as a non-root user bubblewrap needs unprivileged user namespaces: sysctl "
                "kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0, and on Ubuntu "
                "24.04 an AppArmor profile for bwrap or kernel.apparmor_restrict_unprivileged_userns=0)"
            )
        else:
            why += (
                " (as root bubblewrap needs CAP_SYS_ADMIN to create namespaces: inside a container, "
                "run it with --cap-add SYS_ADMIN and a seccomp profile that allows unshare/mount)"
            )
        return f"a probe run in bubblewrap failed (exit {result.returncode}): {why}"
    except OSError as error:
        return f"the sandbox could not be prepared: {error}"
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        if cgroup is not None:
            cgroup.destroy()
        shutil.rmtree(box, ignore_errors=True)


def create_run_cgroup(plan: SandboxPlan, memory_bytes: int, max_pids: int) -> RunCgroup | None:
    if plan.cgroups is None:
        return None
    return _create_in(plan.cgroups, memory_bytes, max_pids)


def harness_source(harness: str) -> str:
    """The script a sandboxed harness runs with `python -c`: the value codec, the limits and the
    drop from root shared by both harnesses (`_harness_common.py`), then `harness` itself."""
    here = Path(__file__).parent
    return "\n".join((here / name).read_text(encoding="utf-8") for name in ("_value_codec.py", "_harness_common.py", harness))
