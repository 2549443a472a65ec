"""Task names of the multi-task model (no torch import: the golden CLI uses it too)."""

from __future__ import annotations

from moevit.errors import ConfigError

#: (name, output channels) per task, in task-id order: M³ViT on Cityscapes (7 categories)
CITYSCAPES_TASKS = (("semseg", 7), ("depth", 1))
#: ... and on NYUD-v2 (40 classes)
NYUD_TASKS = (("semseg", 40), ("depth", 1))


def default_tasks(num_tasks: int) -> tuple[tuple[str, int], ...]:
    """Tasks of an accelerator preset with ``num_tasks`` gates (Cityscapes names first)."""
    base = CITYSCAPES_TASKS + tuple((f"task{t}", 1) for t in range(len(CITYSCAPES_TASKS), num_tasks))
    return base[:num_tasks]


def task_index(tasks, task) -> int:
    """Task id from an int, a digit string or a task name; a clear error otherwise."""
    import numbers
    names = [n for n, _ in tasks]
    valid = f"(valid: 0..{len(names) - 1} = {names})"
    if isinstance(task, str):
        text = task.strip()
        if text in names:
            return names.index(text)
        try:
            task = int(text)
        except ValueError:
            raise ConfigError(f"unknown task {task!r}; this model has tasks {names} "
                              f"(pass a name or an id 0..{len(names) - 1})") from None
    if isinstance(task, bool) or not isinstance(task, numbers.Integral):
        raise ConfigError(f"task must be a task id or name, not {task!r} {valid}")
    t = int(task)
    if not 0 <= t < len(names):
        raise ConfigError(f"task {t} is out of range: this model has {len(names)} tasks {valid}")
    return t
