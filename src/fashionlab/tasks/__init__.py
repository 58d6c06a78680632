"""The task registry: the one table of task names. Everything else about a task (config, metric and
direction, hooks, evaluator, synthetic data, weights format, serve adapter, capabilities) is on its
``Task`` class (``tasks/base.py``); every verb looks the task up here."""
from __future__ import annotations

from ..errors import FashionlabError
from .base import Task, load_object

TASKS: dict[str, str] = {
    "attributes": "fashionlab.tasks.attributes.task:AttributesTask",
    "classify": "fashionlab.tasks.classify.task:ClassifyTask",
    "keypoints": "fashionlab.tasks.keypoints.task:KeypointsTask",
    "retrieval": "fashionlab.tasks.retrieval.task:RetrievalTask",
    "styles": "fashionlab.tasks.styles.task:StylesTask",
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise FashionlabError(f"unknown task '{name}'; tasks: {', '.join(TASKS)}")
    return load_object(TASKS[name])()


def all_tasks() -> list[Task]:
    return [get_task(name) for name in TASKS]


def task_for_format(fmt: str) -> Task | None:
    """The task whose weights files declare ``format`` (None when no task does)."""
    return next((task for task in all_tasks() if task.weights_format == fmt), None)
