"""One adapter per kind of head: what a head's predictions mean to results, pictures,
deployed files and agreement checks (:mod:`mtvision.tasks.base`).

A head declares its kind with a class attribute, ``task = DETECTION``; consumers ask
``head.task`` (or :func:`task_named` for a deployed file's metadata) and never
compare task names.
"""

from mtvision.tasks.base import (
    HeadInfo,
    Task,
    heads_of_task,
    predicted_heads,
    register_task,
    registered_tasks,
    task_named,
    task_of,
)
from mtvision.tasks.classification import CLASSIFICATION, Classification
from mtvision.tasks.detection import DETECTION, Detection
from mtvision.tasks.segmentation import SEGMENTATION, Segmentation

#: Every built-in task adapter.
TASKS = (CLASSIFICATION, DETECTION, SEGMENTATION)

__all__ = [
    "CLASSIFICATION",
    "DETECTION",
    "SEGMENTATION",
    "TASKS",
    "Classification",
    "Detection",
    "HeadInfo",
    "heads_of_task",
    "predicted_heads",
    "Segmentation",
    "Task",
    "register_task",
    "registered_tasks",
    "task_named",
    "task_of",
]
