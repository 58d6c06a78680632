"""Task registry: a task is a folder with a ``Task`` subclass; the engine finds it by name."""
from __future__ import annotations

import importlib

from ..errors import FashionlabError
from .base import Task

TASKS: dict[str, str] = {
    "attributes": "fashionlab.tasks.attributes.task:AttributesTask",
    "classify": "fashionlab.tasks.classify.task:ClassifyTask",
}
EVALUATE_ONLY = ("styles", "retrieval", "keypoints")


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise FashionlabError(f"unknown task '{name}'; trainable tasks: {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
