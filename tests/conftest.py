import os

import pytest
import torch


def _cuda_ready() -> bool:
    try:
        import smcr_ext

        return smcr_ext.backends()["cuda_available"]
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    # Tests marked `cuda` need a GPU and a CUDA build; `make test` deselects them with
    # -m "not cuda", and `pytest -m cuda` on a GPU machine runs them. Asking for them
    # where they cannot run is an error, not a silent skip.
    if _cuda_ready():
        return
    selected = [it for it in items if "cuda" in it.keywords]
    if selected and os.environ.get("SMCR_REQUIRE_CUDA", "0") == "1":
        raise pytest.UsageError("SMCR_REQUIRE_CUDA=1 but no CUDA device or CUDA build")
    skip = pytest.mark.skip(reason="needs a CUDA device and the CUDA build of smcr_ext")
    for it in selected:
        it.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """torch on one thread for the test (small convolutions are faster so on 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
