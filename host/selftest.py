"""The scripted session behind the shipped replay fixtures (``tests/host/fixtures/*.jsonl``).

:func:`drive` runs the same calls on any :class:`Accelerator`: a batch of 3 for task 0, the same
batch for task 1 (a task switch), and a stop at ``l0.score_buffer``.  The fixtures are recorded
on the ``golden`` backend (this module) and on ``rtl`` (:mod:`moevit.host.rtl_selftest`); the
tests replay them
through the ``pynq`` backend's code with a stand-in ``pynq`` module.  Regenerate them after a
deliberate change of the driver's register sequence with::

    python -m moevit.host.selftest tests/host/fixtures/golden_tiny_session.jsonl
"""

from __future__ import annotations

import sys

import numpy as np

from moevit.config import preset
from moevit.golden.weight_io import synthetic_image
from moevit.golden.weights import seeded_weights

PRESET, WEIGHT_SEED, BATCH = "tiny", 0, 3
STOP_AT = "l0.score_buffer"


def inputs():
    """(cfg, weights, images [3][C][H][W] float) of the fixture session."""
    cfg = preset(PRESET)
    images = np.stack([synthetic_image(cfg, s) for s in range(BATCH)])
    return cfg, seeded_weights(cfg, WEIGHT_SEED), images


def drive(acc, images) -> dict:
    """The fixture's calls; returns the results by step name."""
    return {"task0": acc.run(images, task=0), "task1": acc.run(images, task=1),
            "stop": acc.run(images, task=1, stop_at=STOP_AT)}


def record(path) -> dict:
    from moevit.host.backend_golden import GoldenDevice
    from moevit.host.driver import Accelerator
    from moevit.host.record import RecordingDevice
    cfg, w, images = inputs()
    dev = RecordingDevice(GoldenDevice(cfg), path, preset=PRESET, script="moevit.host.selftest",
                          note="recorded on the golden backend (no RTL top yet, issue 11)")
    with dev:
        return drive(Accelerator(dev, cfg, w, batch=BATCH), images)


if __name__ == "__main__":
    record(sys.argv[1])
