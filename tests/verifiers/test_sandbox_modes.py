"""The sandbox refuses rather than runs with less, and holds in its non-root mode too."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from delta_rlvr.verifiers import code_runner, sandbox
from delta_rlvr.verifiers.code_runner import CodeTests, SandboxUnavailable, run_code_tests

ADD = CodeTests(function="add", calls=(((1, 2), 3),))
RIGHT_ADD = "def add(a, b):\n    return a + b\n"
SRC = Path(code_runner.__file__).resolve().parents[2]


def test_a_machine_without_bubblewrap_is_detected(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox.os, "access", lambda path, mode: False)
    assert sandbox._find_plan() == "bubblewrap (bwrap) is not installed"


def test_without_the_sandbox_run_code_tests_refuses_and_says_what_to_install(monkeypatch):
    monkeypatch.setattr(code_runner, "sandbox_plan", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap") as refusal:
        run_code_tests(RIGHT_ADD, ADD)
    assert "isolation='none'" in str(refusal.value) and "unsafe" in str(refusal.value)
    assert code_runner.sandbox_isolation().startswith("unavailable: bubblewrap (bwrap) is not installed")
    # the explicit, documented opt-out still runs (rlimits and an audit hook only)
    assert run_code_tests(RIGHT_ADD, ADD, isolation="none").status == "passed"
    assert run_code_tests("def add(a, b):\n    return 0\n", ADD, isolation="none").status == "failed"


def test_an_unknown_isolation_is_rejected():
    with pytest.raises(ValueError, match="'bwrap'"):
        run_code_tests(RIGHT_ADD, ADD, isolation="docker")


def test_function_tests_compare_plain_data_in_the_parent():
    tests = CodeTests(
        function="f",
        calls=(((1,), [1, (2, 3.0)]), ((2,), {"a": {1, 2}}), ((3,), None), ((4,), 0.1 + 0.2)),
    )
    solution = (
        "def f(x):\n"
        "    return {1: [1, (2, 3)], 2: {'a': {1, 2}}, 3: None, 4: 0.3}[x]\n"
    )
    result = run_code_tests(solution, tests, isolation="none")
    assert result.status == "passed", result
    # a list is not a tuple; one wrong value fails the problem
    result = run_code_tests("def f(x):\n    return [1, [2, 3.0]]\n", tests, isolation="none", stop_at_first_failure=False)
    assert result.status == "failed" and result.passed_cases == 0, result


def test_function_tests_need_plain_data_arguments_and_a_name():
    with pytest.raises(ValueError, match="not plain data"):
        CodeTests(function="f", calls=(((object(),), 1),))
    with pytest.raises(ValueError, match="exactly one of"):
        CodeTests(assert_code="assert 1", function="f", calls=(((1,), 1),))


NON_ROOT_SCRIPT = r"""
import importlib, json, os, sys, types
sys.path.insert(0, SRC)
# import the verifiers package without its math dependencies (this is the system python)
package = types.ModuleType('delta_rlvr.verifiers')
package.__path__ = [os.path.join(SRC, 'delta_rlvr', 'verifiers')]
sys.modules['delta_rlvr'] = types.ModuleType('delta_rlvr')
sys.modules['delta_rlvr'].__path__ = [os.path.join(SRC, 'delta_rlvr')]  # for delta_rlvr.errors
sys.modules['delta_rlvr.verifiers'] = package
runner = importlib.import_module('delta_rlvr.verifiers.code_runner')
CodeTests, run = runner.CodeTests, runner.run_code_tests
ADD = CodeTests(function='add', calls=(((1, 2), 3),))
out = {'isolation': runner.sandbox_isolation(), 'caller': os.getuid()}
out['right'] = run('def add(a, b):\n    return a + b\n', ADD).status
out['wrong'] = run('def add(a, b):\n    return a - b\n', ADD).status
identity = ("import os\nstatus = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)\n"
            "print(os.getuid(), status['CapEff'].strip(), status['NoNewPrivs'].strip(), status['Seccomp'].strip(), len([p for p in os.listdir('/proc') if p.isdigit()]))\n")
out['identity'] = run(identity, CodeTests(stdio=(('', '?'),))).detail
bomb = ("import os, time\nborn = 0\ntry:\n    for _ in range(2000):\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n"
        "        born += 1\nexcept OSError as error:\n    print(born, type(error).__name__)\n")
out['bomb'] = run(bomb, CodeTests(stdio=(('', '2000'),)), max_processes=8).detail
escape = ("import ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\nr1 = libc.unshare(0x10000000 | 0x00020000)\ne1 = ctypes.get_errno()\n"
          "r2 = libc.mount(None, b'/usr', None, 32 | 4096, None)\ne2 = ctypes.get_errno()\nprint(r1, errno.errorcode[e1], r2, errno.errorcode[e2])\n")
out['escape'] = run(escape, CodeTests(stdio=(('', '0'),))).detail
ASSERTS = CodeTests(assert_code='assert add(1, 2) == 3\n')  # the test process in a user namespace too
out['asserts'] = [run(s, ASSERTS).status for s in ('def add(a, b):\n    return a + b\n', 'def add(a, b):\n    return a - b\n',
                  'class E:\n    def __eq__(s, o):\n        return True\ndef add(a, b):\n    return E()\n')]
importlib.import_module('delta_rlvr.verifiers.assert_process').shutdown()  # idle test processes end
import time
time.sleep(0.3)
mine = os.getpid()
def alive(pid):  # zombies re-parented to init are reaped by it, they hold nothing
    try:
        return os.stat(f'/proc/{pid}').st_uid == os.getuid() and '\nState:\tZ' not in open(f'/proc/{pid}/status').read()
    except OSError:
        return False
out['left_over'] = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != mine and alive(p)]
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/usr/bin/python3", os.X_OK),
                    reason="needs root to become another uid, and /usr/bin/python3")
@pytest.mark.skipif(isinstance(sandbox.sandbox_plan(), str), reason="no sandbox here")
def test_a_non_root_caller_gets_a_user_namespace_sandbox_with_rlimit_process_limits():
    # uid 65534 runs the system interpreter: bwrap makes a user namespace; no cgroup can be
    # created, so the process limit is RLIMIT_NPROC, counted per sandbox
    # uid 65534 must be able to read the sources: a checkout under a 0700 folder (mktemp -d,
    # pytest's tmp_path) is not, so the verifiers package is copied to a world-readable folder
    readable = Path(tempfile.mkdtemp(prefix="delta-sandbox-src-"))
    try:
        readable.chmod(0o755)
        shutil.copytree(SRC / "delta_rlvr" / "verifiers", readable / "delta_rlvr" / "verifiers",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(SRC / "delta_rlvr" / "errors.py", readable / "delta_rlvr" / "errors.py")
        for folder in (readable / "delta_rlvr", readable / "delta_rlvr" / "verifiers"):
            folder.chmod(0o755)
        script = f"SRC = {str(readable)!r}\n" + NON_ROOT_SCRIPT
        completed = subprocess.run(
            ["/usr/bin/python3", "-I", "-c", script], user=65534, group=65534, extra_groups=[],
            capture_output=True, text=True, timeout=120, cwd="/tmp", env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=1))
    assert out["isolation"].startswith("bubblewrap") and "user namespace" in out["isolation"], out
    assert "RLIMIT_NPROC" in out["isolation"], out
    assert (out["right"], out["wrong"]) == ("passed", "failed"), out
    assert out["asserts"] == ["passed", "failed", "failed"], out
    assert f"wrong output '65534 {'0' * 16} 1 2 2" in out["identity"], out
    born = int(out["bomb"].split("'")[1].split()[0])
    assert born <= 8 and "BlockingIOError" in out["bomb"], out
    assert "wrong output '-1 EPERM -1 EPERM" in out["escape"], out
    assert out["left_over"] == [], out


@pytest.mark.skipif(isinstance(sandbox.sandbox_plan(), str), reason="no sandbox here")
def test_an_interpreter_started_through_a_path_with_dot_dots_still_runs_sandboxed_code(tmp_path):
    # `../../.venv/bin/python -m pytest` from a subfolder makes sys.executable such a path; inside
    # the sandbox the folders it passes through do not exist, so the sandbox resolves it first
    roundabout = os.path.relpath(os.path.abspath(sys.executable), tmp_path)  # ../../../work/.../python
    script = ("from delta_rlvr.verifiers import CodeTests, run_code_tests\n"
              "print(run_code_tests('def f(a):\\n    return a\\n', CodeTests(function='f', calls=(((1,), 1),))).status)\n")
    done = subprocess.run([roundabout, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "passed"
