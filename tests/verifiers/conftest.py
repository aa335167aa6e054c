"""Shared fixtures for verifier tests: one warm pool for the whole session, the shared data dir."""

from pathlib import Path

import pytest

from delta_rlvr.verifiers import VerifierPool

# tests/verifiers/conftest.py -> repo root is parents[2]; benchmarks sit beside it in ../shared/data.
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def pool():
    verifier_pool = VerifierPool(num_workers=2)
    assert verifier_pool.wait_ready(120), "verifier workers did not start"
    yield verifier_pool
    verifier_pool.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark files not found at {SHARED_DATA} (they live beside the repo in ../shared/data)")
    return SHARED_DATA
