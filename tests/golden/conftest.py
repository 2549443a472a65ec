"""Fixtures for the golden-model tests."""
import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread: on a shared 2-core machine torch's spinning threads can slow
    small ops by 100x; results do not depend on the thread count."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
