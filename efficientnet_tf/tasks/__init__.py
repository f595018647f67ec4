"""Tasks: what a run learns, how it is judged and served (tasks/base.py). config.task picks one.

Each task is a package (tasks/classification/, tasks/detection/) imported only when a run, an
export or a command names it: a classification run never imports detection's dependencies
(pycocotools)."""

import importlib

# name -> the task's package (or, for a task defined elsewhere, its Task class)
TASKS = {"classification": "efficientnet_tf.tasks.classification",
         "detection": "efficientnet_tf.tasks.detection"}


def _package(name):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; use one of {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name]) if isinstance(TASKS[name], str) else None


def get(name):
    """The Task class called `name`."""
    package = _package(name)
    return package.TASK if package is not None else TASKS[name]


def serving(name):
    """The serving module (Python) of the task called `name`: its MIN_SCORE, read_outputs,
    format_result and draw, what `predict` shows of an export's outputs."""
    package = _package(name)
    if package is None:
        raise ValueError(f"task {name!r} has no export to predict with")
    return package.serving


def create(run):
    """The Task object of a Run (its data source included)."""
    return get(run.task)(run, run.source)
