"""The model's label space meets a dataset's: labels by the model's class names.

A model's label ``i`` means its ``i``-th class name (what a checkpoint's
``meta["dataset_meta"]["classes"]`` or a deployed file's metadata records). A
dataset that numbers its classes from what it finds (an ImageNet split's own
class folders, a COCO json's own categories) gives the same images other
labels as soon as one class is missing: a val split without 2 of 6 folders
would score every later class as its neighbour. So wherever a model is scored
on a dataset (tools/eval.py with a checkpoint or a deployed file, the val loop
during training), the dataset is built with ``model_classes``:

- labels are the model's indices, looked up by name;
- a model class the data lacks is an empty class (logged once, naming them);
- a class of the data the model does not have is an
  :class:`~mtvision.errors.AnnotationError` naming both lists (its images
  cannot be scored);
- two lists without one shared name but with as many classes (ImageNet synset
  folders and a converted model's readable labels) are matched by position,
  with one warning saying so;
- a dataset whose labels are fixed by its files (VOC masks) cannot be remapped:
  its class list must equal the model's.

:func:`with_model_classes` puts the model's classes into a dataset config
(every dataset type whose constructor takes ``model_classes``, also the parts
of a ``JoinedDataset``/``TaskConcatDataset`` and of mmengine's wrappers).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence

from mmengine.logging import print_log

from mtvision.errors import AnnotationError
from mtvision.utils.metainfo import TASKS_KEY, task_metainfo

__all__ = [
    "check_same_classes",
    "dataloaders_with_model_classes",
    "model_label_of",
    "with_model_classes",
]

#: Dataset types holding per-task parts under ``datasets`` (part name = task / head name).
_PER_TASK_WRAPPERS = ("JoinedDataset", "TaskConcatDataset")


def model_label_of(
    data_classes: Sequence[str], model_classes: Sequence[str], source: str
) -> tuple[dict[str, int], list[str]]:
    """Each data class's label in the model's label space, and the model classes the data lacks.

    Args:
        data_classes: the class names the data holds (folders, categories).
        model_classes: the model's class names, index = label.
        source: the data (folder or file) named in the error.

    Returns:
        ``({data class: model label}, [model classes not among data_classes])``.

    Raises:
        AnnotationError: a data class the model does not have, naming both lists.
    """
    model_classes = [str(name) for name in model_classes]
    if _by_position(data_classes, model_classes, source):
        return {name: label for label, name in enumerate(data_classes)}, []
    unknown = [name for name in data_classes if name not in model_classes]
    if unknown:
        raise AnnotationError(
            f"{source}: classes {_shown(unknown)} are not classes of the model; the data has "
            f"{_shown(data_classes)}, the model {_shown(model_classes)} (select the model's "
            "classes with classes=[...], or evaluate a model trained on them)"
        )
    label_of = {name: model_classes.index(name) for name in data_classes}
    missing = [name for name in model_classes if name not in label_of]
    return label_of, missing


def check_same_classes(
    data_classes: Sequence[str], model_classes: Sequence[str], source: str
) -> None:
    """For data whose labels are fixed by its files: its classes must be the model's, in order.

    Raises:
        AnnotationError: the lists differ, naming both.
    """
    data_classes = [str(name) for name in data_classes]
    model_classes = [str(name) for name in model_classes]
    if data_classes != model_classes and not _by_position(data_classes, model_classes, source):
        raise AnnotationError(
            f"{source}: the data's classes {_shown(data_classes)} are not the model's "
            f"{_shown(model_classes)}; their labels (index = class) cannot be mapped by name here"
        )


def _by_position(data_classes: Sequence[str], model_classes: list[str], source: str) -> bool:
    """True (and one warning) when the two lists name their classes in different vocabularies
    (not one name shared, e.g. ImageNet synset folders and a converted model's readable
    labels) but count the same classes: then only their positions can be matched."""
    if set(data_classes) & set(model_classes) or len(data_classes) != len(model_classes):
        return False
    print_log(
        f"{source}: none of the data's {len(data_classes)} class names is a class name of the "
        f"model (data {_shown(data_classes, 3)}, model {_shown(model_classes, 3)}); the counts "
        "agree, so class i of the data is taken as the model's class i",
        logger="current",
        level=logging.WARNING,
    )
    return True


def _shown(names: Sequence[str], limit: int = 20) -> str:
    """``names`` as a list, cut after ``limit`` with the count (a message stays one line)."""
    names = [str(name) for name in names]
    if len(names) <= limit:
        return str(names)
    return f"{str(names[:limit])[:-1]}, ... ({len(names)} in all)]"


def with_model_classes(dataset_cfg, model_meta: Mapping | None, task: str | None = None):
    """A copy of ``dataset_cfg`` whose datasets take the model's classes (``model_classes``).

    Args:
        dataset_cfg: a dataset config dict (anything else is returned as is).
        model_meta: the model's label spaces in ``dataset_meta`` form
            (``{"classes": ...}``, or ``{"tasks": {head: {"classes": ...}}}``);
            ``None`` or without class names: nothing changes.
        task: the head scoring this dataset, needed to pick one task of a
            multi-task model for a single-task dataset; the parts of a
            ``JoinedDataset``/``TaskConcatDataset`` are named by their task.

    A dataset type whose constructor has no ``model_classes`` argument, a task
    the model does not have, and a config that already sets ``model_classes``
    are left as they are.
    """
    if not isinstance(dataset_cfg, Mapping) or not model_meta:
        return dataset_cfg
    cfg = dict(dataset_cfg)
    type_name = _type_name(cfg.get("type"))
    if type_name in _PER_TASK_WRAPPERS and isinstance(cfg.get("datasets"), Mapping):
        cfg["datasets"] = {
            part: with_model_classes(part_cfg, model_meta, part)
            for part, part_cfg in cfg["datasets"].items()
        }
        return cfg
    if isinstance(cfg.get("dataset"), Mapping):  # mmengine's RepeatDataset, ClassBalancedDataset
        cfg["dataset"] = with_model_classes(cfg["dataset"], model_meta, task)
        return cfg
    if isinstance(cfg.get("datasets"), list | tuple):  # mmengine's ConcatDataset
        cfg["datasets"] = [with_model_classes(part, model_meta, task) for part in cfg["datasets"]]
        return cfg
    if "model_classes" in cfg or not _takes_model_classes(cfg.get("type")):
        return cfg
    if TASKS_KEY in model_meta and task is None:
        return cfg
    try:
        classes = task_metainfo(model_meta, task or "").get("classes")
    except KeyError:
        return cfg
    if classes:
        cfg["model_classes"] = tuple(str(name) for name in classes)
    return cfg


def dataloaders_with_model_classes(dataloader_cfg, evaluator_cfg, model_meta: Mapping | None):
    """A copy of a config's ``val_dataloader``/``test_dataloader`` whose datasets take the
    model's classes (:func:`with_model_classes`).

    ``dataloader_cfg`` is one dataloader config (``dict(dataset=...)``) or, for the
    multi-task loops, ``{entry: dataloader config}``, whose single-task datasets are
    matched with the head their entry's evaluator (``evaluator_cfg[entry]``) scores.
    Anything else (a built dataloader) is returned as it is.
    """
    if not isinstance(dataloader_cfg, Mapping) or not model_meta:
        return dataloader_cfg
    if "dataset" in dataloader_cfg:
        loader = dict(dataloader_cfg)
        loader["dataset"] = with_model_classes(loader["dataset"], model_meta)
        return loader
    loaders = dict(dataloader_cfg)
    for entry, loader in dataloader_cfg.items():
        if not isinstance(loader, Mapping) or "dataset" not in loader:
            continue
        heads = evaluator_cfg.get(entry) if isinstance(evaluator_cfg, Mapping) else None
        head = next(iter(heads)) if isinstance(heads, Mapping) and len(heads) == 1 else None
        loaders[entry] = dict(loader)
        loaders[entry]["dataset"] = with_model_classes(loader["dataset"], model_meta, head)
    return loaders


def _type_name(dataset_type) -> str:
    if isinstance(dataset_type, str):
        return dataset_type.rpartition(".")[2]
    return getattr(dataset_type, "__name__", "")


def _takes_model_classes(dataset_type) -> bool:
    from mtvision.registry import DATASETS

    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    if not inspect.isclass(cls):
        return False
    return "model_classes" in inspect.signature(cls.__init__).parameters
