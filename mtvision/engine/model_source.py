"""The one reader of what a config and a checkpoint (or a deployed file) say about a
model and its test data.

From the config: its test datasets (:func:`test_dataset_entries`: one per evaluation
entry of a multi-task config, with the heads its evaluator scores), their pipelines
(:func:`test_pipelines`), the pipeline without the steps that read a sample's files
(:func:`inference_pipeline`: transforms declaring ``reads_files = True``, e.g.
``LoadImage``, ``LoadMask``), the test input size (:func:`pipeline_output_size`,
:func:`test_input_size`) and the class names / palette its test datasets declare
(:func:`config_metainfo`).

From a checkpoint and a deployed file: :class:`ModelSource`, built once per command,
reads the checkpoint once (weights and ``meta`` together), builds the model from it,
and resolves each head's class names and palette: the deployed file's metadata first,
then the checkpoint's ``meta["dataset_meta"]`` (what training saves), then the config.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from torch import nn

from mtvision.engine.checkpoint import check_state_dict_fits, load_checkpoint_file
from mtvision.errors import CheckpointError, ConfigError
from mtvision.registry import DATASETS, MODELS, TRANSFORMS
from mtvision.tasks import HeadInfo, Task
from mtvision.utils.metainfo import TASKS_KEY
from mtvision.utils.state_dict import unwrap_state_dict

__all__ = [
    "ModelSource",
    "TestEntry",
    "config_metainfo",
    "deployed_dataset_meta",
    "inference_pipeline",
    "pipeline_output_size",
    "reads_files",
    "test_dataset_entries",
    "test_input_size",
    "test_pipelines",
]

# ------------------------------------------------------------------ test entries


class TestEntry(NamedTuple):
    """One test dataset of a config: its entry ``name`` (``""`` for a single-task
    config's ``test_dataloader``), its ``dataset`` config, and the ``heads`` its
    evaluator scores (None: all)."""

    name: str
    dataset: dict
    heads: tuple[str, ...] | None


def test_dataset_entries(cfg: Config) -> list[TestEntry]:
    """The config's test datasets: one for a single-task config (``test_dataloader.dataset``);
    one per entry for a multi-task config with evaluation entries (``test_dataloader =
    {entry: dataloader}``, ``test_evaluator = {entry: {head: metric}}``,
    docs/multitask.md), with the heads its evaluator scores.

    Raises:
        ConfigError: no ``test_dataloader``, or an entry that is not a dataloader
            config with a ``dataset`` (the message names the file and the entry).
    """
    loader = cfg.get("test_dataloader")
    if not isinstance(loader, dict):
        raise ConfigError(f"{cfg.filename}: no test_dataloader")
    if "dataset" in loader:
        return [TestEntry("", loader["dataset"], None)]
    evaluator = cfg.get("test_evaluator") or {}
    entries = []
    for name, entry_loader in loader.items():
        if not isinstance(entry_loader, dict) or "dataset" not in entry_loader:
            raise ConfigError(
                f"{cfg.filename}: test_dataloader.{name}: expected a dataloader config with a "
                "dataset (multi-task configs map entry names to dataloaders)"
            )
        heads = evaluator.get(name) if isinstance(evaluator, dict) else None
        entries.append(
            TestEntry(name, entry_loader["dataset"], None if heads is None else tuple(heads))
        )
    return entries


def test_pipelines(cfg: Config) -> list[tuple[list, tuple[str, ...] | None]]:
    """``[(test pipeline, heads it serves or None for all), ...]``, one per test entry.

    Raises:
        ConfigError: no ``test_dataloader``, or a dataset without a ``pipeline`` (the
            message names the file and the dataset's key).
    """
    pipelines = []
    for entry in test_dataset_entries(cfg):
        pipeline = entry.dataset.get("pipeline")
        if not pipeline:
            key = (
                f"test_dataloader.{entry.name}.dataset" if entry.name else "test_dataloader.dataset"
            )
            raise ConfigError(f"{cfg.filename}: {key} has no pipeline to preprocess images with")
        pipelines.append((list(pipeline), entry.heads))
    return pipelines


# --------------------------------------------------------------------- pipelines


def reads_files(step) -> bool:
    """Whether a pipeline step (a config dict or a built transform) reads the sample's
    files: its class declares ``reads_files = True`` (``LoadImage``, ``LoadMask``).

    Raises:
        KeyError: a config ``type`` that no registry knows (as building it would).
    """
    if isinstance(step, Mapping):
        step_type = step.get("type")
        transform_class = TRANSFORMS.get(step_type) if isinstance(step_type, str) else step_type
        if transform_class is None:
            raise KeyError(f"{step_type!r} is not a registered transform")
        return bool(getattr(transform_class, "reads_files", False))
    return bool(getattr(step, "reads_files", False))


def inference_pipeline(pipeline: Iterable) -> Compose:
    """A test pipeline without the steps that read files (:func:`reads_files`): images
    are given (or loaded by the caller) and there are no annotations to read."""
    return Compose(
        [
            TRANSFORMS.build(step) if isinstance(step, Mapping) else step
            for step in pipeline
            if not reads_files(step)
        ]
    )


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


def test_input_size(cfg: Config) -> tuple[int, int] | None:
    """The (H, W) of the config's test images: the first test dataloader whose pipeline
    fixes one (a multi-task config's entries may differ: whole-image segmentation
    has none), else None."""
    for entry in test_dataset_entries(cfg):
        size = pipeline_output_size(entry.dataset.get("pipeline"))
        if size is not None:
            return size
    return None


# -------------------------------------------------------------------- class names


def config_metainfo(cfg: Config) -> dict | None:
    """Class names (and palette) the config's test dataset declares, without reading data:
    its ``metainfo``/``classes`` or its class's ``METAINFO``; a dataset joining several
    parts (``datasets={task: part}``) gives ``{"tasks": {task: ...}}``, as does a
    multi-task config's evaluation entries (each entry's for the heads it scores)."""
    loader = cfg.get("test_dataloader") or {}
    if "dataset" in loader:
        return _dataset_metainfo(loader["dataset"])
    tasks: dict[str, dict] = {}
    for entry_loader in loader.values():
        if isinstance(entry_loader, Mapping) and "dataset" in entry_loader:
            found = _dataset_metainfo(entry_loader["dataset"]) or {}
            for task, meta in (found.get(TASKS_KEY) or {}).items():
                tasks.setdefault(task, meta)
    evaluator = cfg.get("test_evaluator") or {}
    for entry, entry_loader in loader.items():
        heads = evaluator.get(entry) if isinstance(evaluator, Mapping) else None
        if not heads or not isinstance(entry_loader, Mapping) or "dataset" not in entry_loader:
            continue
        found = _dataset_metainfo(entry_loader["dataset"])
        if found and TASKS_KEY not in found:
            for head in heads:
                tasks.setdefault(head, found)
    return {TASKS_KEY: tasks} if tasks else None


def _dataset_metainfo(dataset: Mapping) -> dict | None:
    parts = dataset.get("datasets")
    if isinstance(parts, Mapping):
        tasks = {name: _dataset_metainfo(part) or {} for name, part in parts.items()}
        return {TASKS_KEY: tasks}
    dataset_type = dataset.get("type")
    dataset_class = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    meta = dict(getattr(dataset_class, "METAINFO", None) or {})
    meta.update(dataset.get("metainfo") or {})
    if dataset.get("classes"):
        meta["classes"] = tuple(dataset["classes"])
        if "palette" in meta and len(meta["palette"]) < len(meta["classes"]):
            meta.pop("palette")
    return meta or None


def deployed_dataset_meta(heads: Mapping[str, Mapping]) -> dict | None:
    """A deployed file's class names (its metadata's ``heads`` entry,
    :func:`mtvision.export.read_deploy_metadata`) in ``dataset_meta`` form:
    ``{"classes": ...}`` for one head, ``{"tasks": {head: {"classes": ...}}}`` for
    several; None when it records no names."""
    tasks = {
        name: {"classes": info["classes"]} for name, info in heads.items() if info.get("classes")
    }
    if not tasks:
        return None
    return next(iter(tasks.values())) if len(heads) == 1 else {TASKS_KEY: tasks}


# ------------------------------------------------------------------ model source


class ModelSource:
    """A config with the checkpoint (and/or deployed file) one command runs, read once.

    Args:
        cfg: the loaded config (:func:`~mtvision.engine.config.load_config`).
        checkpoint: a ``.pth`` file, read here once, weights and ``meta`` together
            (:func:`~mtvision.engine.checkpoint.load_checkpoint_file`); None: none.
        deployed_heads: the ``heads`` entry of a deployed file's metadata
            (``{head: {"task", "classes", "topk", ...}}``) when a deployed file runs.

    Raises:
        FileNotFoundError / CheckpointError: the checkpoint cannot be read (named).
    """

    def __init__(
        self,
        cfg: Config,
        checkpoint: str | os.PathLike | None = None,
        *,
        deployed_heads: Mapping[str, Mapping] | None = None,
    ) -> None:
        self.cfg = cfg
        self.checkpoint_path = None if checkpoint is None else os.fspath(checkpoint)
        self.checkpoint = (
            None
            if self.checkpoint_path is None
            else load_checkpoint_file(self.checkpoint_path, map_location="cpu")
        )
        self.deployed_heads = None if deployed_heads is None else dict(deployed_heads)

    @property
    def checkpoint_dataset_meta(self) -> dict | None:
        """The checkpoint's ``meta["dataset_meta"]`` (the training data's ``metainfo``:
        class names, COCO category ids, ...), None where it has none."""
        checkpoint = self.checkpoint
        meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
        dataset_meta = meta.get("dataset_meta") if isinstance(meta, Mapping) else None
        return dict(dataset_meta) if isinstance(dataset_meta, Mapping) else None

    @property
    def model_dataset_meta(self) -> dict | None:
        """The label space of the model that runs: the deployed file's class names when
        a deployed file runs, else the checkpoint's ``dataset_meta``."""
        if self.deployed_heads is not None:
            return deployed_dataset_meta(self.deployed_heads)
        return self.checkpoint_dataset_meta

    @property
    def test_entries(self) -> list[TestEntry]:
        """The config's test datasets (:func:`test_dataset_entries`)."""
        return test_dataset_entries(self.cfg)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The config's test input size (:func:`test_input_size`)."""
        return test_input_size(self.cfg)

    def build_model(self, int8_emulation: bool | None = None) -> nn.Module:
        """``cfg.model`` built, with the checkpoint's weights loaded strictly, in eval mode.

        ``int8_emulation`` (default: the config's top-level ``int8_emulation`` key, False
        without one): compute as the int8 TFLite file the checkpoint was converted from
        does (:mod:`mtvision.convert.int8_emulation`, from the checkpoint's
        ``meta["int8_emulation"]``); exports build the float model (False).

        Raises:
            CheckpointError: the weights do not fit (the message names the file), or the
                emulation is asked of a checkpoint without its record.
            ValueError: no checkpoint was given.
        """
        if self.checkpoint is None:
            raise ValueError("building the model needs a checkpoint")
        init_default_scope(self.cfg.get("default_scope", "mtvision"))
        model = MODELS.build(self.cfg.model)
        state_dict = unwrap_state_dict(self.checkpoint, self.checkpoint_path)
        check_state_dict_fits(model, state_dict, self.checkpoint_path)
        model.load_state_dict(state_dict, strict=False)  # strictness checked above
        model.eval()
        if int8_emulation is None:
            int8_emulation = bool(self.cfg.get("int8_emulation", False))
        if int8_emulation:
            from mtvision.convert.int8_emulation import META_KEY, apply_int8_emulation

            meta = self.checkpoint.get("meta") if isinstance(self.checkpoint, Mapping) else None
            record = meta.get(META_KEY) if isinstance(meta, Mapping) else None
            try:
                apply_int8_emulation(model, record or {})
            except CheckpointError as error:
                raise CheckpointError(f"{self.checkpoint_path}: {error}") from None
        return model

    def head_infos(self, head_tasks: Mapping[str, Task]) -> dict[str, HeadInfo]:
        """Each head's name, task, class names and palette, looked up by head name: the
        deployed file's class names first, then the checkpoint's ``dataset_meta``, then
        the config's test datasets (:func:`config_metainfo`); without any, label numbers.
        ``max_topk``: the classes a deployed classification graph returns."""
        metainfo = self.checkpoint_dataset_meta or config_metainfo(self.cfg)
        deployed = self.deployed_heads or {}
        infos = {}
        for name, task in head_tasks.items():
            head = deployed.get(name) or {}
            max_topk = int(head["topk"]) if "topk" in head else None
            infos[name] = HeadInfo.from_metainfo(
                name, task, metainfo, head.get("classes"), max_topk=max_topk
            )
        return infos

    def checkpoint_classes(self, head_tasks: Mapping[str, Task]) -> dict[str, list[str] | None]:
        """Class names of each head from the checkpoint's ``dataset_meta`` alone (what a
        Runner or ``tools/convert_weights.py`` wrote; what an export records), None where
        it has none."""
        classes = {}
        for name, task in head_tasks.items():
            info = HeadInfo.from_metainfo(name, task, self.checkpoint_dataset_meta)
            classes[name] = None if info.classes is None else list(info.classes)
        return classes
