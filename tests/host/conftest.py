"""Shared fixtures of the host-library tests (tiny preset, seeded weights, 3 images)."""
import numpy as np
import pytest

from moevit.config import preset
from moevit.golden.model import GoldenModel
from moevit.golden.weight_io import synthetic_image
from moevit.golden.weights import seeded_weights


@pytest.fixture(scope="session")
def tiny():
    cfg = preset("tiny")
    w = seeded_weights(cfg, 0)
    images = np.stack([synthetic_image(cfg, s) for s in range(3)])
    return cfg, w, images


@pytest.fixture(scope="session")
def reference(tiny):
    """GoldenModel results per task, every tap (the independent reference)."""
    cfg, w, images = tiny
    model = GoldenModel(cfg, w)
    return {t: model.run(images, task=t, taps=True) for t in range(cfg.num_tasks)}
