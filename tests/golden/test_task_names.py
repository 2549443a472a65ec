"""Task names are accepted wherever a task id is (GoldenModel.run, compare, the CLI)."""

import numpy as np
import pytest

from moevit.config import preset
from moevit.errors import ConfigError
from moevit.golden.model import GoldenModel
from moevit.golden.weight_io import synthetic_image
from moevit.golden.weights import seeded_weights


def test_golden_model_accepts_task_names():
    cfg = preset("tiny")
    model = GoldenModel(cfg, seeded_weights(cfg, 3))
    img = synthetic_image(cfg, 1)
    by_name = model.run(img, task="depth").output
    by_id = model.run(img, task=1).output
    other = model.run(img, task="semseg").output
    assert np.array_equal(by_name, by_id)
    assert not np.array_equal(by_name, other)  # the task gate matters on the MoE layer
    assert model.task_id(np.int64(1)) == 1 and model.task_id("0") == 0


@pytest.mark.parametrize("task, pattern", [
    ("dept", r"^unknown task 'dept'; this model has tasks \['semseg', 'depth'\] \(pass a name "
             r"or an id 0\.\.1\)$"),
    (2, r"^task 2 is out of range: this model has 2 tasks \(valid: 0\.\.1 = \['semseg', "
        r"'depth'\]\)$"),
    (-1, r"^task -1 is out of range"),
    (1.0, r"^task must be a task id or name, not 1\.0 "),
    (True, r"^task must be a task id or name, not True "),
])
def test_bad_tasks_are_named(task, pattern):
    cfg = preset("tiny")
    with pytest.raises(ConfigError, match=pattern):
        GoldenModel(cfg, seeded_weights(cfg, 3)).run(synthetic_image(cfg, 1), task=task)
