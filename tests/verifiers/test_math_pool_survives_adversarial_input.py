"""Hostile answers return within timeout + 2 s, score 0, and leave the pool able to score."""

import os
import signal
import threading
import time

import pytest

from delta_rlvr.verifiers import VerifierPool, score_math

TIMEOUT_S = 1.0

ADVERSARIAL = {
    "exponent tower": r"\boxed{9^{9^{9^{9^9}}}}",
    "huge power": r"\boxed{10^{10^{8}}}",
    "factorial of a huge number": r"\boxed{(10^{10^{7}})!}",
    "100k-character answer": r"\boxed{" + "1+" * 50_000 + "1}",
    "100k characters without a box": "x" * 100_000,
    "thousands of nested braces": r"\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
    "long tuple of symbols": r"\boxed{(" + ",".join(["x"] * 800) + ")}",
    "binary junk": r"\boxed{" + bytes(range(256)).decode("latin-1") + "}",
    "lone surrogates and NULs": "\\boxed{\ud800\x00\udfff}",
    "empty string": "",
    "empty box": r"\boxed{}",
    "unclosed box": r"\boxed{\frac{1}{2",
}


def assert_pool_healthy(pool):
    results = score_math([r"\boxed{\frac{1}{2}}", r"\boxed{3}"], ["0.5", "4"], pool=pool, timeout_s=10)
    assert [r.reason for r in results] == ["correct", "wrong"]


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_prediction_returns_in_time_with_score_zero(pool, name):
    start = time.monotonic()
    result = score_math([ADVERSARIAL[name]], ["5"], pool=pool, timeout_s=TIMEOUT_S)[0]
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT_S + 2, f"{name} took {elapsed:.2f}s"
    assert result.score == 0.0
    assert result.reason in {"wrong", "unparsed", "timeout"}
    assert_pool_healthy(pool)


@pytest.mark.parametrize("name", ["exponent tower", "binary junk", "thousands of nested braces"])
def test_adversarial_gold_returns_in_time(pool, name):
    gold = ADVERSARIAL[name].removeprefix(r"\boxed{").removesuffix("}")
    start = time.monotonic()
    result = score_math([r"\boxed{5}"], [gold], pool=pool, timeout_s=TIMEOUT_S)[0]
    assert time.monotonic() - start < TIMEOUT_S + 2
    assert result.score == 0.0
    assert_pool_healthy(pool)


def test_a_worker_stuck_in_c_code_is_killed_and_replaced():
    """SIGSTOP makes a worker ignore its soft deadline like a GIL-holding computation would."""
    pool = VerifierPool(num_workers=1)
    try:
        assert pool.wait_ready(120)
        (stuck,) = pool.worker_pids()
        os.kill(stuck, signal.SIGSTOP)
        start = time.monotonic()
        result = score_math([r"\boxed{2}"], ["2"], pool=pool, timeout_s=0.5)[0]
        assert time.monotonic() - start < 0.5 + 2
        assert (result.score, result.reason) == (0.0, "timeout")
        assert "hard deadline" in result.detail
        assert_pool_healthy(pool)
        assert pool.restarts == 1 and pool.worker_pids() != [stuck]
    finally:
        pool.close()


def test_a_worker_that_died_while_idle_is_replaced_before_the_next_check():
    pool = VerifierPool(num_workers=1)
    try:
        assert pool.wait_ready(120)
        (dead,) = pool.worker_pids()
        os.kill(dead, signal.SIGKILL)
        time.sleep(0.2)
        assert_pool_healthy(pool)
    finally:
        pool.close()


def test_scoring_from_many_threads_at_once_gives_each_caller_its_own_results(pool):
    results: dict[int, list[str]] = {}

    def caller(index: int) -> None:
        golds = [str(index), str(index + 1)]
        preds = [rf"\boxed{{{index}}}", rf"\boxed{{{index}}}"]
        results[index] = [r.reason for r in score_math(preds, golds, pool=pool)]

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {i: ["correct", "wrong"] for i in range(12)}


def test_the_default_pool_works_off_the_main_thread():
    """math-verify alone raises off the main thread (signal.alarm); through the pool it does not."""
    out = []
    thread = threading.Thread(target=lambda: out.extend(score_math([r"\boxed{\pi/2}"], [r"\frac{\pi}{2}"])))
    thread.start()
    thread.join(timeout=120)
    assert [r.reason for r in out] == ["correct"]


# Near-hedges and near-statements that would make a backtracking regex explode (issue 25's
# hedge, statement and unit rules run partly in the caller's process, outside the pool's deadline).
NEAR_MISSES = {
    "letters and double spaces": "The answer is " + "A  " * 600 + "!",
    "parenthesised letters": r"\boxed{" + "(A) " * 400 + "x}",
    "letters joined by or": "The answer is " + "A or " * 300 + "!",
    "final-answer statements": r"\boxed{1} " + "final answer is " * 300 + "x",
    "unit words": r"\boxed{5 " + "cm " * 600 + "!}",
    "words after a value": r"\boxed{1 " + "ab. " * 500 + "}",
}


@pytest.mark.parametrize("answer_format", ["choice", "boxed", "auto"])
@pytest.mark.parametrize("name", sorted(NEAR_MISSES))
def test_near_miss_hedges_and_statements_return_in_time(pool, name, answer_format):
    start = time.monotonic()
    result = score_math([NEAR_MISSES[name]], ["C"], answer_format=answer_format, pool=pool, timeout_s=TIMEOUT_S)[0]
    assert time.monotonic() - start < TIMEOUT_S + 2, name
    assert result.score == 0.0
