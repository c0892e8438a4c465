"""One dataset per task behind one index: COCO for detection, VOC for segmentation, ImageNet for classification.

Each task's dataset keeps its own adapter, pipeline and label space; its
samples carry only that task's annotation (``label``, ``boxes``/``labels`` or
``mask``), so a multi-task model trains each head only on the samples that
annotate it. Batches mixing the tasks in fixed proportions come from
:class:`~mtvision.data.task_sampling.TaskQuotaBatchSampler`::

    train_dataloader = dict(
        batch_size=24,
        sampler=dict(type="PerTaskSampler", shuffle=True),
        batch_sampler=dict(type="TaskQuotaBatchSampler"),  # 8 + 8 + 8 per batch
        collate_fn=dict(type="mtvision.collate_samples"),
        dataset=dict(
            type="TaskConcatDataset",
            datasets=dict(
                classification=dict(type="ImageNetFolder", ..., pipeline=cls_pipeline),
                detection=dict(type="CocoDetection", ..., pipeline=det_pipeline),
                segmentation=dict(type="VOCSegmentation", ..., pipeline=seg_pipeline),
            ),
        ),
    )
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

from torch.utils.data import ConcatDataset

from mtvision.errors import ConfigError
from mtvision.registry import DATASETS
from mtvision.utils.metainfo import TASKS_KEY

__all__ = ["TaskConcatDataset"]


@DATASETS.register_module()
class TaskConcatDataset(ConcatDataset):
    """Named per-task datasets concatenated (``torch.utils.data.ConcatDataset``).

    Index ``i`` is sample ``i - offset`` of the task dataset whose range holds
    it (:meth:`task_range`), in the order the tasks are given. ``metainfo`` is
    ``{"tasks": {task: that dataset's metainfo}}`` (see
    :mod:`mtvision.utils.metainfo`).

    Args:
        datasets: task name (the head its annotations feed) -> dataset config
            or built dataset, each with its own ``pipeline``.

    Raises:
        ConfigError: no datasets, or a task whose dataset is empty.
    """

    def __init__(self, datasets: Mapping[str, dict | Any]) -> None:
        if not isinstance(datasets, Mapping) or not datasets:
            raise ConfigError(
                "TaskConcatDataset: datasets must map task names (the heads they feed) to "
                f"dataset configs, got {datasets!r}"
            )
        built = {
            task: DATASETS.build(cfg) if isinstance(cfg, Mapping) else cfg
            for task, cfg in datasets.items()
        }
        for task, dataset in built.items():
            if hasattr(dataset, "full_init"):
                dataset.full_init()
            if len(dataset) == 0:
                raise ConfigError(f"TaskConcatDataset: the {task!r} dataset ({dataset!r}) is empty")
        super().__init__(list(built.values()))
        self.tasks: tuple[str, ...] = tuple(built)
        self.datasets_by_task: dict[str, Any] = built

    @property
    def metainfo(self) -> dict:
        return {
            TASKS_KEY: {
                task: dict(getattr(dataset, "metainfo", None) or {})
                for task, dataset in self.datasets_by_task.items()
            }
        }

    def task_range(self, task: str) -> range:
        """The indices of ``task``'s samples in this dataset."""
        position = self.tasks.index(task)
        start = self.cumulative_sizes[position - 1] if position else 0
        return range(start, self.cumulative_sizes[position])

    def task_of(self, index: int) -> str:
        """The task whose dataset holds sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is outside 0..{len(self) - 1}")
        return self.tasks[bisect.bisect_right(self.cumulative_sizes, index)]

    def full_init(self) -> None:
        """Nothing to do: the task datasets are initialised when built (mmengine calls this)."""
