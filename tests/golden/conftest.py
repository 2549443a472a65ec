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


@pytest.fixture(scope="session")
def random_image():
    """``random_image(cfg, seed=0)``: a float32 (channels, height, width) image of random 8-bit
    pixel values / 256, from ``np.random.default_rng(seed)``."""
    import numpy as np

    def make(cfg, seed=0):
        rng = np.random.default_rng(seed)
        shape = (cfg.image_channels, cfg.image_height, cfg.image_width)
        return (rng.integers(0, 256, shape) / 256).astype(np.float32)
    return make
