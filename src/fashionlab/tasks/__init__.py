"""Task registry: a task is a folder with a ``Task`` subclass; the engine finds it by name."""
from __future__ import annotations

import importlib

from ..errors import FashionlabError
from .base import Task

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
    module, cls = TASKS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("fashionlab"):
            raise FashionlabError(f"task '{name}' can be evaluated but not trained yet") from None
        raise
