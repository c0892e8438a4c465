"""Validation and test loops that evaluate every head on its own validation data.

A multi-task model is scored by several (dataloader, metrics) *entries*: COCO
val for the detection head, VOC val for the segmentation head, ImageNet val
for the classifier - or one joined dataset scored by all three metrics. Each
entry runs the model with only the heads its metrics score
(``model.active_heads(names)``) and the loop returns the union of all
metrics, e.g. ``{"classification/top1": ..., "coco/bbox_mAP": ..., "voc/mIoU": ...}``.

Config shape: ``val_dataloader`` and ``val_evaluator`` are dicts keyed by the
same entry names; an entry's evaluator maps head names to the metric (or list
of metrics) scoring that head's predictions::

    val_dataloader = dict(
        coco=dict(batch_size=8, sampler=..., collate_fn=..., dataset=dict(type="CocoDetection", ...)),
        voc=dict(batch_size=1, sampler=..., collate_fn=..., dataset=dict(type="VOCSegmentation", ...)),
    )
    val_evaluator = dict(
        coco=dict(detection=dict(type="CocoMetric", ann_file=...)),
        voc=dict(segmentation=dict(type="MeanIoU", prefix="voc")),
    )
    val_cfg = dict(type="MultiTaskValLoop")

Each metric's ``dataset_meta`` is its own task's (:func:`~mtvision.utils.metainfo.task_metainfo`):
the entry dataset's ``metainfo`` for a single-task dataset, its
``metainfo["tasks"][head]`` for a joined one, so CocoMetric gets the category
ids and MeanIoU the segmentation classes, never another task's class list.
Metrics are mmengine ``BaseMetric``s: under torchrun every process scores
its shard and ``evaluate`` gathers the results, as in mmengine's own loops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.amp import autocast
from mmengine.runner.base_loop import BaseLoop
from torch.utils.data import DataLoader

from mtvision.errors import ConfigError
from mtvision.registry import LOOPS, METRICS
from mtvision.utils.metainfo import task_metainfo

__all__ = ["EvaluationEntry", "MultiTaskTestLoop", "MultiTaskValLoop"]


@dataclass
class EvaluationEntry:
    """One dataloader, the heads run on it, and the metrics scoring them."""

    name: str
    dataloader: DataLoader
    heads: tuple[str, ...]
    evaluator: Evaluator


class _MultiTaskEvalLoop(BaseLoop):
    """The shared body of :class:`MultiTaskValLoop` and :class:`MultiTaskTestLoop`.

    ``self.dataloader`` and ``self.evaluator`` are those of the entry being run
    (the first before the run), so mmengine's hooks that read
    ``runner.val_dataloader`` (progress, ETA) see the current entry;
    ``self.current_entry`` names it.
    """

    stage = ""  # "val" or "test": names the hooks and the model step

    def __init__(
        self,
        runner,
        dataloader: Mapping,
        evaluator: Mapping,
        fp16: bool = False,
    ) -> None:
        kind = f"{self.stage}_dataloader / {self.stage}_evaluator"
        names = _entry_names(dataloader, evaluator, kind)
        self.entries: list[EvaluationEntry] = []
        for name in names:
            loader = _build_dataloader(runner, dataloader[name])
            metrics = _build_metrics(name, evaluator[name], kind)
            dataset_meta = getattr(loader.dataset, "metainfo", None)
            for head, metric in metrics:
                try:
                    metric.dataset_meta = task_metainfo(dataset_meta, head)
                except KeyError as error:
                    raise ConfigError(
                        f"{kind} entry {name!r}: {error.args[0]}; its metrics score {head!r}"
                    ) from None
            heads = tuple(dict.fromkeys(head for head, _ in metrics))
            self.entries.append(
                EvaluationEntry(name, loader, heads, Evaluator([m for _, m in metrics]))
            )
        _check_prefixes(self.entries, kind)
        super().__init__(runner, self.entries[0].dataloader)
        self.evaluator = self.entries[0].evaluator
        self.current_entry = self.entries[0].name
        self.fp16 = fp16

    def run(self) -> dict:
        """Run every entry; returns all entries' metrics in one dict."""
        self.runner.call_hook(f"before_{self.stage}")
        self.runner.call_hook(f"before_{self.stage}_epoch")
        self.runner.model.eval()
        metrics: dict = {}
        for entry in self.entries:
            metrics.update(self.run_entry(entry))
        self.runner.call_hook(f"after_{self.stage}_epoch", metrics=metrics)
        self.runner.call_hook(f"after_{self.stage}")
        return metrics

    def run_entry(self, entry: EvaluationEntry) -> dict:
        """Predict ``entry``'s data with its heads only and score it."""
        self.dataloader, self.evaluator, self.current_entry = (
            entry.dataloader,
            entry.evaluator,
            entry.name,
        )
        if hasattr(entry.dataloader.dataset, "metainfo"):
            self.runner.visualizer.dataset_meta = entry.dataloader.dataset.metainfo
        print_log(
            f"{self.stage}: entry {entry.name!r}, heads {list(entry.heads)}, "
            f"{len(entry.dataloader.dataset)} images",
            logger="current",
        )
        with self._active_heads(entry.heads):
            for index, data_batch in enumerate(entry.dataloader):
                self.run_iter(index, data_batch)
        return entry.evaluator.evaluate(len(entry.dataloader.dataset))

    def _active_heads(self, heads: tuple[str, ...]):
        model = (
            self.runner.model.module if is_model_wrapper(self.runner.model) else self.runner.model
        )
        # A single-task model has one head and no selection to make.
        if not hasattr(model, "active_heads"):
            return contextlib.nullcontext()
        return model.active_heads(heads)

    @torch.no_grad()
    def run_iter(self, index: int, data_batch: dict) -> None:
        self.runner.call_hook(f"before_{self.stage}_iter", batch_idx=index, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            step = (
                self.runner.model.val_step if self.stage == "val" else self.runner.model.test_step
            )
            outputs = step(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            f"after_{self.stage}_iter", batch_idx=index, data_batch=data_batch, outputs=outputs
        )


@LOOPS.register_module()
class MultiTaskValLoop(_MultiTaskEvalLoop):
    """Validation over several (dataloader, heads, metrics) entries; see the module docstring.

    Args:
        runner: the mmengine Runner (it passes itself).
        dataloader: ``val_dataloader``: entry name -> dataloader config or DataLoader.
        evaluator: ``val_evaluator``: entry name -> {head name: metric config,
            list of metric configs, or built metric}.
        fp16: run the model under autocast.

    Raises:
        ConfigError: the two dicts name different entries, an entry's
            evaluator does not name heads, a joined dataset has no annotations
            for a head its metrics score, or two entries' metrics share a prefix.
    """

    stage = "val"


@LOOPS.register_module()
class MultiTaskTestLoop(_MultiTaskEvalLoop):
    """Testing over several (dataloader, heads, metrics) entries; arguments as :class:`MultiTaskValLoop`
    with ``test_dataloader`` / ``test_evaluator``."""

    stage = "test"


def _entry_names(dataloader, evaluator, kind: str) -> list[str]:
    shape = (
        "dict(entry_name=dataloader config, ...) and dict(entry_name=dict(head_name=metric "
        "config, ...), ...) with the same entry names"
    )
    for what, value, single_key in (
        ("dataloader", dataloader, "dataset"),
        ("evaluator", evaluator, "type"),
    ):
        if not isinstance(value, Mapping) or not value or single_key in value:
            raise ConfigError(
                f"{kind}: a multi-task loop takes {shape}; the {what} is {_short(value)}"
            )
    if set(dataloader) != set(evaluator):
        raise ConfigError(
            f"{kind}: the dataloader entries {list(dataloader)} and the evaluator entries "
            f"{list(evaluator)} differ; each entry needs both"
        )
    return list(dataloader)


def _build_dataloader(runner, dataloader) -> DataLoader:
    if isinstance(dataloader, DataLoader):
        return dataloader
    diff_rank_seed = runner._randomness_cfg.get("diff_rank_seed", False)
    return runner.build_dataloader(dataloader, seed=runner.seed, diff_rank_seed=diff_rank_seed)


def _build_metrics(name: str, heads, kind: str) -> list[tuple[str, BaseMetric]]:
    """``[(head, metric), ...]`` of one entry's evaluator config."""
    if not isinstance(heads, Mapping) or not heads or "type" in heads:
        raise ConfigError(
            f"{kind} entry {name!r}: name the head each metric scores, e.g. "
            f"dict(detection=dict(type='CocoMetric', ...)); got {_short(heads)}"
        )
    metrics = []
    for head, configs in heads.items():
        configs = configs if isinstance(configs, Sequence) else [configs]
        for config in configs:
            metric = METRICS.build(config) if isinstance(config, Mapping) else config
            if not isinstance(metric, BaseMetric):
                raise ConfigError(
                    f"{kind} entry {name!r}, head {head!r}: expected a metric config or "
                    f"BaseMetric, got {_short(config)}"
                )
            metrics.append((head, metric))
    return metrics


def _check_prefixes(entries: list[EvaluationEntry], kind: str) -> None:
    """Two entries' metrics with one prefix would report under the same names."""
    owner: dict[str, str] = {}
    for entry in entries:
        for prefix in {metric.prefix for metric in entry.evaluator.metrics if metric.prefix}:
            if prefix in owner:
                raise ConfigError(
                    f"{kind}: entries {owner[prefix]!r} and {entry.name!r} both have metrics "
                    f"with the prefix {prefix!r}, so their results would share names; give "
                    "one of them another prefix=..."
                )
            owner[prefix] = entry.name


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
