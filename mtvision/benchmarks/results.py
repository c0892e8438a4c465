"""The end-to-end benchmark's results: what each contender returned for the timed image, per
head, in its task adapter's format, described and compared by the adapter.

A contender's result is ``{head name: HeadOutputs(task, outputs)}``; ``outputs`` are
the deployed graph's outputs for one image (``{field: (1, ...)}``, the format of
:meth:`mtvision.tasks.Task.agreement`): top-5 ``scores``/``labels``; padded
``boxes`` (x1y1x2y2, input pixels) / ``scores`` / ``labels`` with ``num_detections``;
the class ``mask``. Which adapter a head has comes from the head
(``model.head_tasks``) or the deployed file's metadata, never from its name; the
references (torchvision, TFLite) convert their own outputs into this format in
:mod:`~mtvision.benchmarks.references`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from mtvision.tasks import Task, task_named

#: Results per image of the classifier contenders: the top-5.
E2E_TOPK = 5


class HeadOutputs(NamedTuple):
    """One head's outputs for the timed image (``{field: (1, ...)}``) and its task adapter."""

    task: Task
    outputs: dict[str, Tensor]


def predicted_outputs(model: nn.Module, prediction: Mapping) -> dict[str, HeadOutputs]:
    """The active heads' fields of one image's merged prediction (``model.test_step``) as
    deployed outputs (:meth:`~mtvision.tasks.Task.to_deployed`, top-:data:`E2E_TOPK`)."""
    tasks = model.head_tasks
    return {
        name: HeadOutputs(tasks[name], tasks[name].to_deployed(prediction, E2E_TOPK))
        for name in model.active_head_names
    }


def graph_outputs(metadata: Mapping, outputs: Mapping[str, np.ndarray]) -> dict[str, HeadOutputs]:
    """A deployed graph's outputs by ONNX output name, per head of its ``metadata``
    (:func:`~mtvision.export.read_deploy_metadata`: each head's task and output names)."""
    return {
        head: HeadOutputs(
            task_named(info["task"]),
            {field: torch.from_numpy(outputs[name]) for field, name in info["outputs"].items()},
        )
        for head, info in metadata["heads"].items()
    }


def describe(result: Mapping[str, HeadOutputs]) -> str:
    """One cell: what a contender returned for the timed image; with several heads, each
    head's :meth:`~mtvision.tasks.Task.summary` after its name."""
    cells = {
        head: head_outputs.task.summary(head_outputs.outputs)
        for head, head_outputs in result.items()
    }
    if len(cells) == 1:
        return next(iter(cells.values()))
    return "; ".join(f"{head}: {cell}" for head, cell in cells.items())


def agreement_lines(
    results: Mapping[str, Mapping[str, HeadOutputs]], comparisons: list[tuple[str, str, str]]
) -> list[str]:
    """One line per (expected key, actual key, label) and per head of the expected
    contender: ``"<label>: <the adapter's comparison>"``; ``{head}`` in a label is
    replaced by the head's name."""
    lines = []
    for expected_key, actual_key, label in comparisons:
        for head, expected in results[expected_key].items():
            actual = results[actual_key][head]
            comparison = expected.task.comparison(expected.outputs, actual.outputs)
            lines.append(f"{label.format(head=head)}: {comparison}")
    return lines
