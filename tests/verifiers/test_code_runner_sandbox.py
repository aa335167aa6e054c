"""Solutions are judged passed/failed/error/timeout, and hostile ones harm nothing."""

import os
import subprocess
import time

import pytest
from code_sandbox import PLAN, needs_sandbox

from delta_rlvr.verifiers import CodeTests, run_code_tests, sandbox_isolation

# Without bubblewrap run_code_tests refuses (tested in test_sandbox_modes.py): skip (code_sandbox.py).
pytestmark = needs_sandbox

ADD_TESTS = CodeTests(assert_code="assert add(1, 2) == 3\nassert add(-1, 1) == 0")
SUM_STDIO = CodeTests(stdio=(("1 2\n", "3\n"), ("10 -4", "6")))


def test_isolation_in_use_is_described():
    print("\nsandbox isolation:", sandbox_isolation())
    assert sandbox_isolation().startswith(("bubblewrap", "unavailable"))
    assert "unsafe" in sandbox_isolation("none")


@pytest.mark.parametrize(
    ("solution", "tests", "status"),
    [
        ("def add(a, b):\n    return a + b\n", ADD_TESTS, "passed"),
        ("def add(a, b):\n    return a - b\n", ADD_TESTS, "failed"),
        ("def add(a, b) return a", ADD_TESTS, "error"),
        ("def add(a, b):\n    raise RuntimeError('no')\n", ADD_TESTS, "error"),
        ("a, b = map(int, input().split())\nprint(a + b)\n", SUM_STDIO, "passed"),
        ("a, b = map(int, input().split())\nprint(a * b)\n", SUM_STDIO, "failed"),
        ("import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\nsys.exit(0)\n", SUM_STDIO, "passed"),
    ],
)
def test_solutions_get_the_right_status(solution, tests, status):
    result = run_code_tests(solution, tests, timeout_s=5)
    assert result.status == status, result
    assert result.score == (1.0 if status == "passed" else 0.0)


def test_humaneval_style_check_function_runs():
    tests = CodeTests(assert_code="def check(candidate):\n    assert candidate(2) == 4\n\ncheck(double)\n")
    assert run_code_tests("def double(x):\n    return 2 * x\n", tests).status == "passed"


def test_exiting_early_cannot_fake_a_pass():
    for solution in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"):
        assert run_code_tests(solution, ADD_TESTS).status == "error"


def test_an_infinite_loop_times_out_on_the_wall_clock():
    start = time.monotonic()
    result = run_code_tests("while True:\n    pass\n", SUM_STDIO, timeout_s=1)
    assert result.status == "timeout"
    assert time.monotonic() - start < 1 + 2


def test_an_output_flood_is_cut_off():
    result = run_code_tests("while True:\n    print('x' * 1000)\n", SUM_STDIO, timeout_s=5, max_output_bytes=100_000)
    assert result.status == "error"


def test_a_memory_hog_fails_with_an_error_naming_the_limit():
    result = run_code_tests("block = b'x' * (8 * 1024 ** 3)\n", ADD_TESTS, memory_mb=512)
    assert result.status == "error", result
    if PLAN.cgroups is not None:  # the cgroup's OOM killer ends it, and the detail says so
        assert "memory limit, 512 MB" in result.detail, result
    else:  # RLIMIT_AS per process: the allocation fails
        assert "MemoryError" in result.detail, result


def test_threads_are_not_limited_by_address_space():
    # 40 threads reserve 40 x 8 MiB of stack plus malloc arenas: far past 512 MB of address
    # space (RLIMIT_AS let about 14 start), far below 512 MB resident
    if PLAN.cgroups is None:
        pytest.skip("no cgroup here: memory is limited per process by RLIMIT_AS, which also limits threads")
    solution = (
        "import threading\n"
        "def spawn(n):\n"
        "    barrier = threading.Barrier(n + 1)\n"
        "    threads = [threading.Thread(target=barrier.wait) for _ in range(n)]\n"
        "    for thread in threads:\n"
        "        thread.start()\n"
        "    barrier.wait()\n"
        "    for thread in threads:\n"
        "        thread.join()\n"
        "    return n\n"
    )
    result = run_code_tests(solution, CodeTests(function="spawn", calls=(((40,), 40),)), memory_mb=512, max_processes=64)
    assert result.status == "passed", result


def test_the_file_size_limit_is_a_setting():
    # a 4 MiB scratch file in the private /tmp is fine by default (the limit was 1 MiB) ...
    solution = "def write(n):\n    open('/tmp/scratch', 'wb').write(b'x' * n)\n    import os\n    return os.path.getsize('/tmp/scratch')\n"
    four = CodeTests(function="write", calls=(((4 << 20,), 4 << 20),))
    assert run_code_tests(solution, four).status == "passed"
    # ... and a write past max_file_bytes fails (EFBIG, "File too large"): an error
    result = run_code_tests(solution, four, max_file_bytes=1 << 20)
    assert result.status == "error", result
    with pytest.raises(ValueError, match="max_file_bytes=0"):
        run_code_tests(solution, four, max_file_bytes=0)


def test_forked_children_do_not_outlive_the_run(tmp_path):
    marker = f"delta-sandbox-fork-{os.getpid()}"
    solution = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        f"        time.sleep(30)  # {marker}\n"
        "def add(a, b):\n    return a + b\n"
    )
    run_code_tests(solution, ADD_TESTS, timeout_s=3)
    time.sleep(0.3)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert survivors == []


@pytest.mark.parametrize(
    "attack",
    [
        "import os\nos.remove(TARGET)\n",
        "import shutil\nshutil.rmtree(os.path.dirname(TARGET))\n",
        "open(TARGET, 'w').write('overwritten')\n",
        "import ctypes\nctypes.CDLL(None).unlink(TARGET.encode())\n",  # bypasses the audit hook
        "import subprocess\nsubprocess.run(['rm', '-f', TARGET])\n",
    ],
)
def test_files_outside_the_sandbox_survive(tmp_path, attack):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    solution = f"import os\nTARGET = {str(target)!r}\n" + attack
    run_code_tests(solution, CodeTests(assert_code="pass"), timeout_s=5)
    assert target.read_text() == "keep me"


def test_the_network_is_unreachable():
    solution = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "s.settimeout(2)\n"
        "s.connect(('1.1.1.1', 53))\n"
    )
    result = run_code_tests(solution, CodeTests(assert_code="pass"), timeout_s=5)
    assert result.status == "error"


def test_the_sandbox_dir_is_writable_and_private():
    solution = "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n"
    assert run_code_tests(solution, CodeTests(assert_code="pass")).status == "passed"


def test_malformed_tests_are_rejected_with_a_fix():
    with pytest.raises(ValueError, match="exactly one of"):
        CodeTests()


def test_threads_subprocesses_and_multiprocessing_still_work():
    solution = (
        "import multiprocessing, subprocess, threading\n"
        "def probe(x):\n"
        "    seen = []\n"
        "    thread = threading.Thread(target=seen.append, args=(x,))\n"
        "    thread.start(); thread.join()\n"
        "    echoed = subprocess.run(['echo', str(x)], capture_output=True, text=True).stdout.strip()\n"
        "    with multiprocessing.Pool(2) as pool:\n"
        "        squares = pool.map(abs, [-x, x])\n"
        "    return seen, echoed, squares\n"
    )
    tests = CodeTests(function="probe", calls=(((3,), ([3], "3", [3, 3])),))
    assert run_code_tests(solution, tests).status == "passed"


def test_assert_tests_see_the_programs_values_exactly_as_plain_data():
    # what a call returns crosses to the test process by the value codec: the same value and
    # type, for strings needing escapes, non-BMP and lone surrogates, -0.0, huge ints, nesting
    values = ['a"b\\c\n\t\x00\x7f', "é€😀", "\ud800x", b"\x00\xff", -0.0, 10 ** 400, (1, [2, {3: frozenset({4})}]), 1 + 2j,
              None, True]
    solution = f"VALUES = {values!r}\ndef f(i):\n    return VALUES[i]\n"
    tests = "import math\n" + "".join(
        f"value = f({i})\nassert value == {v!r} and type(value) is type({v!r})\n" for i, v in enumerate(values))
    tests += "assert math.copysign(1, f(4)) == -1\nassert f(i=9) is True\n"
    result = run_code_tests(solution, CodeTests(assert_code=tests))
    assert result.status == "passed", result


def test_exceptions_of_the_program_reach_the_tests_as_builtin_ones():
    solution = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    tests = "try:\n    f(-1)\nexcept ValueError as error:\n    assert str(error) == 'negative'\nelse:\n    assert False\nassert f(2) == 2\n"
    assert run_code_tests(solution, CodeTests(assert_code=tests)).status == "passed"
    # StopIteration is not passed on as itself: it would silently end a loop or map() of the tests
    stopper = "def f(x):\n    raise StopIteration\n"
    assert run_code_tests(stopper, CodeTests(assert_code="assert all(map(f, [1, 2]))\n")).status == "error"


def test_a_value_the_tests_cannot_send_is_an_error_not_a_pass():
    result = run_code_tests("def f(g):\n    return 1\n", CodeTests(assert_code="assert f(lambda: 0) == 1\n"))
    assert result.status == "error" and "cannot reach the program's process" in result.detail, result
