"""Tasks: what a run learns, how it is judged and served (tasks/base.py). config.task picks one."""

from efficientnet_tf.tasks.classification import ClassificationTask
from efficientnet_tf.tasks.detection import DetectionTask

TASKS = {task.NAME: task for task in (ClassificationTask, DetectionTask)}


def get(name):
    """The Task class called `name`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; use one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def create(run):
    """The Task object of a Run (its data source included)."""
    return get(run.task)(run, run.source)
