"""Suite-wide: tests marked `gpu` are skipped where no CUDA device is present; the evaluation
and analysis tests run with one torch thread (they share the machine's two cores with other jobs)."""

import pytest
import torch

ONE_THREAD_DIRS = ("evaluation", "analysis")


@pytest.fixture(autouse=True)
def one_thread_for_evaluation_and_analysis(request):
    if request.node.path.parent.name not in ONE_THREAD_DIRS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
