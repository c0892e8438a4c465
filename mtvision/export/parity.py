"""How closely a deployed graph's outputs follow the torch model's: one number per head.

Used by ``tools/export_onnx.py`` after writing a file, by the tests and by the
benchmark. Each head's task adapter says how its outputs are compared
(:meth:`mtvision.tasks.Task.agreement`): detections as sets (onnxruntime's NMS may
order equal scores differently from torchvision's,
:func:`~mtvision.tasks.detection.detection_agreement`), classification as top-1
labels (and the top-k scores' largest difference), segmentation as the share of
equal pixels.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from mtvision.tasks import Task, task_named
from mtvision.tasks.detection import detection_agreement

__all__ = ["detection_agreement", "head_agreement", "max_score_difference"]


def _task(task: Task | str) -> Task:
    """A task adapter, or the one a deployed file's metadata names."""
    return task if isinstance(task, Task) else task_named(task)


def head_agreement(
    task: Task | str, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]
) -> float:
    """One agreement number in [0, 1] for a head's deployed outputs; ``task`` is the head's
    adapter (``head.task``) or the task name its deployed metadata records."""
    return _task(task).agreement(expected, actual)


def max_score_difference(
    task: Task | str, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]
) -> float:
    """Largest |score difference| of a classification head's top-k (0 for tasks without
    one)."""
    difference = _task(task).max_score_difference(expected, actual)
    return 0.0 if difference is None else difference
