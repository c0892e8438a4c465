"""What a config, a checkpoint and a deployed file say about deployment: the test input
size and class names."""

from __future__ import annotations

from collections.abc import Mapping

from mtvision.engine.checkpoint import load_checkpoint_file
from mtvision.engine.config import test_dataset_entries
from mtvision.export.deploy import read_deploy_metadata
from mtvision.utils.metainfo import TASKS_KEY, task_metainfo

#: Albumentations transforms whose output size is their ``height`` x ``width``.
_FIXED_SIZE_TRANSFORMS = ("Resize", "CenterCrop", "Crop", "RandomCrop", "LongestMaxSizePad")


def pipeline_output_size(pipeline) -> tuple[int, int] | None:
    """(H, W) every image has after ``pipeline`` (its last fixed-size Albumentations
    step: ``Resize``, ``CenterCrop``, ...), or None when sizes vary (no such step)."""
    size = None
    for step in pipeline or ():
        if not isinstance(step, Mapping) or step.get("type") != "Albumentations":
            continue
        for transform in step.get("transforms", ()):
            if isinstance(transform, Mapping) and transform.get("type") in _FIXED_SIZE_TRANSFORMS:
                if "height" in transform and "width" in transform:
                    size = (int(transform["height"]), int(transform["width"]))
    return size


def test_input_size(cfg) -> tuple[int, int] | None:
    """The (H, W) of the config's test images: the first test dataloader whose pipeline
    fixes one (a multi-task config's entries may differ: whole-image segmentation
    has none), else None."""
    for entry in test_dataset_entries(cfg):
        size = pipeline_output_size(entry.dataset.get("pipeline"))
        if size is not None:
            return size
    return None


def checkpoint_dataset_meta(checkpoint_path: str) -> dict | None:
    """The checkpoint's ``meta["dataset_meta"]`` (the training data's ``metainfo``: class
    names, COCO category ids, ...), None where it has none."""
    checkpoint = load_checkpoint_file(checkpoint_path, map_location="cpu")
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, Mapping) else {}
    dataset_meta = meta.get("dataset_meta") if isinstance(meta, Mapping) else None
    return dict(dataset_meta) if isinstance(dataset_meta, Mapping) else None


def deployed_dataset_meta(onnx_file: str) -> dict | None:
    """A deployed file's class names (its metadata) in ``dataset_meta`` form:
    ``{"classes": ...}`` for one head, ``{"tasks": {head: {"classes": ...}}}`` for
    several; None when it records no names."""
    heads = read_deploy_metadata(onnx_file)["heads"]
    tasks = {
        name: {"classes": info["classes"]} for name, info in heads.items() if info.get("classes")
    }
    if not tasks:
        return None
    return next(iter(tasks.values())) if len(heads) == 1 else {TASKS_KEY: tasks}


def checkpoint_classes(checkpoint_path: str, head_names) -> dict[str, list[str] | None]:
    """Class names of each head from the checkpoint's ``meta["dataset_meta"]`` (what a
    Runner or ``tools/convert_weights.py`` wrote), None where it has none."""
    dataset_meta = checkpoint_dataset_meta(checkpoint_path)
    classes = {}
    for name in head_names:
        try:
            names = task_metainfo(dataset_meta, name).get("classes")
        except KeyError:
            names = None
        classes[name] = None if names is None else [str(n) for n in names]
    return classes
