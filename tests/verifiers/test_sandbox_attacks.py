"""Hostile programs against the code sandbox (issue 16): each attack fails, checked from both
sides: the verdict (never "passed") and the host (canary intact, nothing planted, no socket
traffic, no secret read, tree-wide limits held)."""

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from code_sandbox import PLAN, needs_sandbox

from delta_rlvr.verifiers.code_runner import CodeTests, run_code_tests
from delta_rlvr.verifiers.sandbox import SANDBOX_UID

pytestmark = needs_sandbox

ADD_CALLS = CodeTests(function="add", calls=(((1, 2), 3), ((-1, 1), 0)))
WRONG_ADD = "def add(a, b):\n    return a - b\n"


@contextmanager
def watch_sandbox_uid(uid=SANDBOX_UID, every_s=0.02):
    """Sample, from the host, the processes running as `uid`: peak count and peak summed RSS."""
    peak = {"processes": 0, "rss_mb": 0.0, "samples": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            count, rss_kb = 0, 0
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                if int(fields.get("Uid", "-1").split()[0]) != uid:
                    continue
                count += 1
                rss_kb += int(fields.get("VmRSS", "0 kB").split()[0])
            peak["processes"] = max(peak["processes"], count)
            peak["rss_mb"] = max(peak["rss_mb"], rss_kb / 1024)
            peak["samples"] += 1
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def processes_of(uid=SANDBOX_UID):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if f"\nUid:\t{uid}\t" in status and "\nState:\tZ" not in status:  # init reaps zombies
                found.append(int(entry))
    return found


@pytest.fixture
def venv_canary():
    """A canary and a would-be planted file inside the virtualenv, which the sandbox sees
    read-only (poisoning site-packages would be the real prize of a file system escape)."""
    tag = uuid.uuid4().hex[:12]
    canary = Path(sys.prefix) / f"delta-sandbox-canary-{tag}.txt"
    planted = Path(sys.prefix) / f"delta-sandbox-pwned-{tag}.txt"
    canary.write_text("keep me")
    try:
        yield canary, planted
    finally:
        canary.unlink(missing_ok=True)
        planted.unlink(missing_ok=True)


REMOUNT_ATTACK = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
report = []
def remount_everything():
    for line in open('/proc/self/mountinfo'):
        point = line.split()[4].replace('\\040', ' ')
        if libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND, None) != 0:
            report.append(f"remount {point}: {errno.errorcode.get(ctypes.get_errno())}")
        else:
            report.append(f"remount {point}: ok")
def damage():
    for target in TARGETS:
        if libc.unlink(target.encode()) == 0:
            report.append(f"unlinked {target}")
        else:
            report.append(f"unlink {target}: {errno.errorcode.get(ctypes.get_errno())}")
    fd = libc.open(PLANT.encode(), os.O_WRONLY | os.O_CREAT, 0o644)
    if fd >= 0:
        libc.write(fd, b"pwned", 5)
        report.append("planted")
    else:
        report.append(f"plant: {errno.errorcode.get(ctypes.get_errno())}")
PREPARE
remount_everything()
damage()
def add(a, b):
    return a + b if "planted" in report else a - b
raise RuntimeError("attack report: " + "; ".join(report)[:900])
"""


def _remount_solution(canary, planted, host_file, prepare=""):
    return (
        f"TARGETS = {[str(canary), str(host_file)]!r}\nPLANT = {str(planted)!r}\n"
        + REMOUNT_ATTACK.replace("PREPARE", prepare)
    )


def test_remounting_read_write_through_ctypes_cannot_touch_host_files(venv_canary, tmp_path):
    canary, planted = venv_canary
    host_file = tmp_path / "precious.txt"
    host_file.write_text("keep me")
    result = run_code_tests(_remount_solution(canary, planted, host_file), ADD_CALLS)
    assert result.status != "passed", result
    assert "remount /: EPERM" in result.detail, result.detail  # seccomp answers mount() with EPERM
    assert canary.read_text() == "keep me" and host_file.read_text() == "keep me"
    assert not planted.exists()


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param("0x10000000 | 0x00020000", id="new-user-and-mount-namespace"),
        pytest.param("0x00020000", id="new-mount-namespace"),
    ],
)
def test_unsharing_namespaces_then_remounting_cannot_touch_host_files(venv_canary, tmp_path, flags):
    canary, planted = venv_canary
    host_file = tmp_path / "precious.txt"
    host_file.write_text("keep me")
    prepare = (
        f"code = libc.unshare({flags})\n"
        "report.append(f'unshare: {code} {errno.errorcode.get(ctypes.get_errno())}')\n"
    )
    result = run_code_tests(_remount_solution(canary, planted, host_file, prepare), ADD_CALLS)
    assert result.status != "passed", result
    assert "unshare: -1 EPERM" in result.detail, result.detail
    assert canary.read_text() == "keep me" and host_file.read_text() == "keep me"
    assert not planted.exists()


def test_host_unix_sockets_are_unreachable(tmp_path):
    path_name = str(tmp_path / "trainer.sock")
    abstract_name = f"\0delta-sandbox-test-{uuid.uuid4().hex}"
    received: list[bytes] = []
    servers = []
    for address in (path_name, abstract_name):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen(4)
        server.settimeout(0.05)
        servers.append(server)
    if os.path.exists(path_name):
        os.chmod(path_name, 0o777)  # even a world-writable socket must be out of reach
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            for server in servers:
                try:
                    connection, _ = server.accept()
                except (TimeoutError, OSError):
                    continue
                with connection:
                    connection.settimeout(1)
                    try:
                        received.append(connection.recv(100) or b"<connected>")
                    except OSError:
                        received.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    solution = f"""
import ctypes, errno, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
report = []
for name in ({path_name!r}, {abstract_name!r}):
    fd = libc.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
    raw = name.encode()
    address = struct.pack('H', socket.AF_UNIX) + raw + b'\\0' * (108 - len(raw))
    if libc.connect(fd, address, len(address) if not raw.startswith(b'\\0') else 2 + len(raw)) == 0:
        libc.write(fd, b'stolen', 6)
        report.append('connected')
    else:
        report.append(errno.errorcode.get(ctypes.get_errno(), '?'))
print(' '.join(report))
"""
    try:
        result = run_code_tests(solution, CodeTests(stdio=(("", "connected connected"),)), timeout_s=5)
    finally:
        stop.set()
        thread.join()
        for server in servers:
            server.close()
    assert result.status == "failed", result
    assert "ENOENT" in result.detail and "ECONNREFUSED" in result.detail, result.detail
    assert received == []


def test_the_trainers_environment_and_proc_are_out_of_reach(monkeypatch):
    secret = f"delta-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("DELTA_TRAINER_SECRET", secret)  # the caller's environment
    trainer = subprocess.Popen(  # another host process with the secret in /proc/<pid>/environ
        [sys.executable, "-c", "import time; time.sleep(30)"], env={"DELTA_TRAINER_SECRET": secret}
    )
    solution = """
import os
found = [value for value in os.environ.values() if value.startswith('delta-secret-')]
pids = [entry for entry in os.listdir('/proc') if entry.isdigit()]
for pid in pids:
    for name in ('environ', 'cmdline'):
        try:
            data = open(f'/proc/{pid}/{name}', 'rb').read().decode(errors='replace')
        except OSError:
            continue
        found += [part.split('=', 1)[-1] for part in data.split('\\0') if 'delta-secret-' in part]
print(found[0] if found else f'nothing found in {len(pids)} pids: {sorted(pids)}')
"""
    try:
        result = run_code_tests(solution, CodeTests(stdio=(("", secret),)))
    finally:
        trainer.kill()
        trainer.wait()
    assert result.status == "failed", result
    assert secret not in result.detail
    assert "nothing found in 2 pids" in result.detail, result.detail  # bwrap's init and the harness


def test_a_fork_bomb_stops_at_the_tree_wide_process_limit():
    solution = """
import os, time
born = 0
try:
    for _ in range(2000):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        born += 1
except OSError as error:
    print(f'{born} forks, then {type(error).__name__}')
else:
    print(f'{born} forks')
"""
    with watch_sandbox_uid() as peak:
        result = run_code_tests(solution, CodeTests(stdio=(("", "2000 forks"),)), timeout_s=10, max_processes=16)
    assert result.status == "failed", result
    born = int(result.detail.split("'")[1].split()[0])
    assert born <= 16, result.detail
    assert peak["processes"] <= 16 + 2, peak
    time.sleep(0.2)
    assert processes_of(SANDBOX_UID) == []  # every fork is gone after the run


def test_forked_memory_hogs_stay_within_the_tree_wide_memory_limit():
    if isinstance(PLAN, str) or PLAN.cgroups is None:
        pytest.skip("no cgroup here: memory is limited per process only (see sandbox_isolation())")
    solution = """
import os, select, time
read_end, write_end = os.pipe()
for _ in range(6):
    if os.fork() == 0:
        block = b'x' * (700 << 20)  # touched, so it is resident
        os.write(write_end, b'1')
        time.sleep(30)
        os._exit(0)
os.close(write_end)
deadline = time.time() + 3
held = 0
while time.time() < deadline and held < 6:
    if select.select([read_end], [], [], 0.1)[0]:
        held += len(os.read(read_end, 6))
print(f'{held} children hold 700 MB')
"""
    with watch_sandbox_uid(every_s=0.01) as peak:
        result = run_code_tests(solution, CodeTests(stdio=(("", "6 children hold 700 MB"),)), timeout_s=10, memory_mb=1024)
    assert result.status != "passed", result
    assert peak["samples"] > 5
    # summed RSS counts the pages forks share once per process: the slack; two children
    # holding 700 MB each would already be 1400 MB, and per-process limits allowed 4.2 GB
    assert peak["rss_mb"] <= 1024 + 160, peak
    assert processes_of(SANDBOX_UID) == []


FORGE_STATUS = """
import os, sys
frame = sys._getframe()
nonce = status = None
while frame is not None:
    nonce = frame.f_locals.get('nonce', nonce)
    status = frame.f_locals.get('status', status)
    frame = frame.f_back
assert nonce and status, 'the harness frames were not found'
status.write(f'{nonce} R 0 ["int","0x3"]\\n{nonce} R 1 ["int","0x0"]\\n{nonce} ok\\n')
status.flush()
print(3)
os._exit(0)
"""


def test_a_status_forged_by_walking_the_stack_does_not_pass_function_tests():
    wrong = CodeTests(function="add", calls=(((2, 2), 4), ((5, 5), 10)))  # forged answers are 3 and 0
    result = run_code_tests(WRONG_ADD + FORGE_STATUS, wrong)
    assert result.status == "failed", result
    assert result.passed_cases == 0


def test_a_status_forged_by_walking_the_stack_does_not_pass_stdio_tests():
    result = run_code_tests(FORGE_STATUS, CodeTests(stdio=(("", "4"),)))
    assert result.status == "failed", result


def test_a_status_forged_by_walking_the_stack_does_not_pass_assert_tests():
    # assert code runs in a separate test process: nothing the solution writes is a verdict
    # (tests/verifiers/test_code_reward_hacks.py attacks the new boundary itself)
    result = run_code_tests(WRONG_ADD + FORGE_STATUS, CodeTests(assert_code="assert add(2, 2) == 4"))
    assert result.status == "error" and result.score == 0.0, result


ALWAYS_EQUAL = """
class Anything:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
class SneakyInt(int):
    def __eq__(self, other):
        return True
def add(a, b):
    return Anything() if a > 0 else SneakyInt(a - b)
"""


def test_a_value_whose_eq_is_always_true_does_not_pass_function_tests():
    result = run_code_tests(ALWAYS_EQUAL, CodeTests(function="add", calls=(((1, 2), 3),)))
    assert result.status == "error" and "not plain data" in result.detail, result
    result = run_code_tests(ALWAYS_EQUAL, CodeTests(function="add", calls=(((-1, 1), 0),)))
    assert result.status == "failed" and "returned -2" in result.detail, result
    # against assert tests too: the test process gets plain data, never the object
    result = run_code_tests(ALWAYS_EQUAL, CodeTests(assert_code="assert add(1, 2) == 3"))
    assert result.status == "failed" and "not plain data" in result.detail, result
    result = run_code_tests(ALWAYS_EQUAL, CodeTests(assert_code="assert add(-1, 1) == 0"))
    assert result.status == "failed" and "line 1" in result.detail, result


def test_the_program_runs_unprivileged_in_its_own_namespaces():
    identity = """
import os
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), status['CapEff'].strip(), status['CapPrm'].strip(),
      status['CapAmb'].strip(), status['NoNewPrivs'].strip(), status['Seccomp'].strip())
"""
    result = run_code_tests(identity, CodeTests(stdio=(("", "?"),)))
    # uid/gid 65534, no groups, no capabilities, no_new_privs, seccomp filter mode (2)
    expected = f"{SANDBOX_UID} {SANDBOX_UID} {SANDBOX_UID} [] {'0' * 16} {'0' * 16} {'0' * 16} 1 2"
    assert f"wrong output '{expected}" in result.detail, result.detail
    surroundings = """
import os
print(sorted(os.environ), os.getcwd(), os.uname().nodename, os.path.exists('/sys'), sorted(os.listdir('/')))
"""
    result = run_code_tests(surroundings, CodeTests(stdio=(("", "?"),)))
    assert "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR'] /tmp sandbox False" in result.detail, result.detail
    for hidden in ("'home'", "'run'", "'var'", "'sys'", "'mnt'"):
        assert hidden not in result.detail
    writes = """
import os
open('/tmp/scratch', 'w').write('private tmp is writable')
outcomes = []
for path in ('/usr/x', '/box/x', '/x', '/etc/x', os.__file__):
    try:
        open(path, 'a')
        outcomes.append('wrote ' + path)
    except OSError as error:
        outcomes.append(error.errno)
print(outcomes)
"""
    result = run_code_tests(writes, CodeTests(stdio=(("", "?"),)))
    assert "wrong output '[" in result.detail and "wrote" not in result.detail, result.detail


def test_a_segfault_is_an_error():
    result = run_code_tests("import ctypes\nctypes.string_at(0)\n", ADD_CALLS)
    assert result.status == "error", result


def test_exiting_early_in_function_tests_is_an_error():
    for solution in ("import sys\ndef add(a, b):\n    sys.exit(0)\n", "import os\nos._exit(0)\n"):
        result = run_code_tests(solution, ADD_CALLS)
        assert result.status == "error", result
