"""Predict on any image: one object built from a config and a checkpoint (or an exported
ONNX file) that takes paths, arrays or lists and returns plain dicts.

What mmdet's ``DetInferencer`` and torchvision's ``model(images)`` give their users::

    inferencer = Inferencer("configs/demo/ssdlite_shapes.py", "work_dirs/ssdlite_shapes/last.pth")
    result = inferencer("photo.jpg")           # one dict
    results = inferencer(["a.jpg", array])     # a list of dicts, in input order
    picture = inferencer.draw(array, results[1])

Preprocessing is the config's test pipeline (``test_dataloader.dataset.pipeline``;
a multi-task config with several evaluation entries runs each entry's pipeline for
the heads its evaluator scores, see :func:`~mtvision.engine.model_source.test_pipelines`).
The steps that read a sample's files (transforms declaring ``reads_files = True``:
``LoadImage``, ``LoadMask``) are dropped, as mmdet's inferencer drops its loaders
(:func:`~mtvision.engine.model_source.inference_pipeline`): the image is read here
(inputs read by :mod:`mtvision.apis.inputs`: a path, a PIL image or encoded bytes
upright, EXIF orientation applied; an array as given). Backend ``"torch"`` runs
``model.test_step`` (data preprocessor + ``predict``); backend ``"onnxruntime"``
runs the exported graph through :class:`mtvision.export.OnnxRuntimeModel`, whose
``predict`` returns the same dicts as ``MultiTaskModel.predict``, so both backends
share the conversion below.

A result is, per head, what its task adapter makes of the head's prediction
(:meth:`mtvision.tasks.Task.result`; the task from the head, or from the deployed
file's metadata):

- classification: ``{"labels": [k ids], "label_names": [k names], "scores": [k
  softmax probabilities]}``, the ``topk`` best classes, best first;
- detection: ``{"boxes": [[x1, y1, x2, y2], ...] (xyxy, pixels of the original
  upright image), "scores": [...], "labels": [...], "label_names": [...]}``, the
  detections scoring at least ``score_threshold``, best first;
- segmentation: ``{"mask": (H, W) uint8 numpy class map at the original size,
  "labels": [classes present, ascending], "label_names": [...], "areas": [pixels
  of each]}``.

A model with one head returns that head's dict; a model with several returns
``{head name: that head's dict}``. Numbers are Python ``int``/``float`` lists
(JSON-ready); only the mask is an array. Class names come from the ONNX file's
metadata (backend ``"onnxruntime"``), else the checkpoint's ``meta["dataset_meta"]``
(what training saves), else the config's dataset ``classes``/``metainfo``
(:meth:`~mtvision.engine.model_source.ModelSource.head_infos`); without any,
``label_names`` are the label numbers as text. The checkpoint is read once. Class names are looked up by
head name, so a head named anything (or a second head of one task) keeps its own.
Heads of one task (whose prediction fields would clash) run one after the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope

from mtvision.apis.inputs import ImageInput, read_image_input, split_inputs
from mtvision.engine import load_config
from mtvision.engine.model_source import (
    ModelSource,
    inference_pipeline,
    pipeline_output_size,
    test_pipelines,
)
from mtvision.errors import ExportError
from mtvision.export.runtimes import runtime_names
from mtvision.tasks import HeadInfo, Task
from mtvision.visualization.draw import DrawOptions, draw_prediction

__all__ = ["BACKENDS", "HeadInfo", "Inferencer"]

#: ``torch`` runs the checkpoint; the others run an exported file in their runtime
#: (:data:`mtvision.export.runtimes.RUNTIMES`: onnxruntime and OpenVINO read ``.onnx``,
#: the phone runtimes their own formats).
BACKENDS = ("torch", *runtime_names())


@dataclass
class _Entry:
    """One test pipeline and the heads that run on its output."""

    pipeline: Compose
    heads: tuple[str, ...]


class Inferencer:
    """Predictions of a trained model on images given as paths or arrays.

    Args:
        config: config file path or a loaded mmengine ``Config``.
        checkpoint: weights (``.pth``); required for backend ``"torch"``. With
            another backend it is optional and read only for its class names.
        backend: ``"torch"``, or a runtime of :data:`BACKENDS` that reads ``model``
            (``"onnxruntime"`` / ``"openvino"``: ``.onnx``; phone runtimes: theirs).
        model: the exported file (every backend but ``"torch"``).
        device: torch device for backend ``"torch"`` (the runtimes run on the CPU).
        score_threshold: detections scoring below it are left out of the results
            (and so of the pictures); 0 keeps every detection the model's own
            ``test_cfg`` keeps.
        topk: how many classes a classification result lists.
        cfg_options: ``--cfg-options`` style overrides, applied to a config path or to a
            copy of a ``Config`` and checked alike (:func:`~mtvision.engine.load_config`).

    Raises:
        FileNotFoundError: the config, checkpoint or ONNX file does not exist.
        ConfigError: a config without a test pipeline, or an unknown key.
        CheckpointError: weights that do not fit the config's model.
        ValueError: an unknown backend or a missing ``checkpoint`` / ``model``.
    """

    def __init__(
        self,
        config: str | os.PathLike | Config,
        checkpoint: str | os.PathLike | None = None,
        *,
        backend: str = "torch",
        model: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        score_threshold: float = 0.3,
        topk: int = 5,
        cfg_options: dict | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        cfg = load_config(config, cfg_options)
        init_default_scope(cfg.get("default_scope", "mtvision"))
        self.cfg = cfg
        self.backend = backend
        self.score_threshold = float(score_threshold)
        self.topk = int(topk)
        self.device = torch.device(device)

        # The checkpoint is read once: weights (backend torch) and class names together.
        source = ModelSource(cfg, checkpoint)
        if backend == "torch":
            if checkpoint is None:
                raise ValueError("backend 'torch' needs a checkpoint")
            if model is not None:
                raise ValueError("model= is the exported file of the other backends, not torch's")
            self.model = source.build_model().to(self.device)
        else:
            if model is None:
                raise ValueError(f"backend {backend!r} needs model=<the exported file>")
            if self.device.type != "cpu":
                raise ValueError(f"backend {backend!r} runs on the CPU, not {device}")
            from mtvision.export import DeployedModel

            config_source = cfg.filename or "the config"
            self.model = DeployedModel(
                os.fspath(model), model=cfg.model, config_source=config_source, runtime=backend
            )
            source.deployed_heads = self.model.metadata["heads"]
        # The file that runs names its classes first, then the checkpoint, then the config.
        self.heads = source.head_infos(self.model.head_tasks)
        entries = test_pipelines(cfg)
        if backend != "torch":
            _check_input_size(self.model, entries, cfg.filename or "the config")
        self.entries = [
            _Entry(inference_pipeline(pipeline), heads)
            for pipeline, heads in _assign_heads(entries, tuple(self.heads))
        ]

    @property
    def multi_head(self) -> bool:
        """Whether results are ``{head name: result}`` (several heads) or one head's dict."""
        return len(self.heads) > 1

    def __call__(
        self, inputs: ImageInput | Iterable[ImageInput], batch_size: int = 1
    ) -> dict | list[dict]:
        """Predict on one image or a list of them (what :mod:`mtvision.apis.inputs` accepts:
        a path, an (H, W, 3) uint8 RGB array, a PIL image, encoded bytes, a binary file
        object, a (3, H, W) uint8 tensor).

        Returns one result dict for one image, a list of them (input order) for a list.

        Raises:
            ImageLoadError: a path, bytes or file that is not a readable image (named).
            TypeError / ValueError: an input of another kind, shape or dtype (one line:
                its position, what it is and what to pass).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items, single = split_inputs(inputs)
        results = []
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            loaded = [read_image_input(item, start + i) for i, item in enumerate(batch)]
            results += self.predict_images([x.image for x in loaded], [x.source for x in loaded])
        return results[0] if single else results

    @staticmethod
    def load(item: ImageInput, index: int = 0) -> np.ndarray:
        """``item`` as an (H, W, 3) uint8 RGB array (see :mod:`mtvision.apis.inputs`): a
        path, a PIL image or encoded bytes are read upright (EXIF applied)."""
        return read_image_input(item, index).image

    def predict_images(
        self, images: Sequence[np.ndarray], sources: Sequence[str | None] | None = None
    ) -> list[dict]:
        """Results of (H, W, 3) uint8 RGB images (already loaded, e.g. by :meth:`load`),
        one dict each; ``sources`` name them in error messages (file paths)."""
        sources = list(sources) if sources is not None else [None] * len(images)
        merged: list[dict] = [{} for _ in images]
        for entry in self.entries:
            samples = [
                entry.pipeline(_start_sample(image, source, index))
                for index, (image, source) in enumerate(zip(images, sources, strict=True))
            ]
            inputs = [sample["inputs"] for sample in samples]
            data_samples = [sample["data_samples"] for sample in samples]
            for heads in _runs(entry.heads, self.heads):
                predictions = self._predict(inputs, data_samples, heads)
                for result, prediction in zip(merged, predictions, strict=True):
                    for name in heads:
                        head = self.heads[name]
                        result[name] = head.task.result(
                            prediction, head, self.topk, self.score_threshold
                        )
        if self.multi_head:
            return merged
        (head,) = self.heads
        return [result[head] for result in merged]

    def _predict(self, inputs, data_samples, heads: tuple[str, ...]) -> list[dict]:
        # Both backends: test_step takes the uint8 pipeline outputs (the torch model
        # normalises in its data preprocessor, the ONNX graph inside itself).
        with torch.no_grad(), self.model.active_heads(heads):
            return self.model.test_step({"inputs": inputs, "data_samples": data_samples})

    def draw(self, image: np.ndarray, result: Mapping, max_size: int | None = None) -> np.ndarray:
        """One picture of a result on its (H, W, 3) uint8 RGB image: the mask's colours,
        the boxes with class names and scores, the top-k classes in a caption below
        (:func:`~mtvision.visualization.draw.draw_prediction`); every head of a
        multi-head result on the same picture.

        ``max_size``: draw on the image scaled down so that its longer side is at most
        this many pixels (boxes and mask scaled with it), so that lines and labels stay
        readable on a large photo; ``None`` draws at the image's own size.
        """
        per_head = result if self.multi_head else {next(iter(self.heads)): result}
        height, width = image.shape[:2]
        scale = 1.0
        if max_size is not None and max(height, width) > max_size:
            scale = max_size / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        heads = [(self.heads[name], head_result) for name, head_result in per_head.items()]
        # Every kept detection is drawn: the results are already thresholded.
        options = DrawOptions(score_threshold=-np.inf, topk=self.topk)
        return draw_prediction(image, heads, options, results=True, scale=scale)


def _assign_heads(
    entries: list[tuple[list, tuple[str, ...] | None]], heads: tuple[str, ...]
) -> list[tuple[list, tuple[str, ...]]]:
    """Each head runs once, after the first entry that serves it; heads no entry names
    run after the first entry."""
    assigned: list[tuple[list, list[str]]] = []
    taken: set[str] = set()
    for pipeline, entry_heads in entries:
        names = [h for h in (entry_heads or heads) if h in heads and h not in taken]
        taken.update(names)
        assigned.append((pipeline, names))
    assigned[0][1].extend(h for h in heads if h not in taken)
    return [(pipeline, tuple(names)) for pipeline, names in assigned if names]


def _start_sample(image: np.ndarray, source: str | None, index: int) -> dict:
    """What ``LoadImage`` hands the next step."""
    height, width = image.shape[:2]
    img_path = source if source is not None else f"<image {index}>"
    meta = {"img_path": img_path, "ori_shape": (height, width), "img_shape": (height, width)}
    return {"img_path": img_path, "image": image, "meta": meta}


def _runs(entry_heads: tuple[str, ...], heads: Mapping[str, HeadInfo]) -> list[tuple[str, ...]]:
    """``entry_heads`` in as few runs as possible with at most one head of each task per run
    (heads of one task predict the same fields, which one merged prediction cannot hold)."""
    runs: list[list[str]] = []
    for name in entry_heads:
        task: Task = heads[name].task
        for run in runs:
            if all(heads[other].task is not task for other in run):
                run.append(name)
                break
        else:
            runs.append([name])
    return [tuple(run) for run in runs]


def _check_input_size(onnx_model, entries, config_source: str) -> None:
    """A graph fixed to one input size needs test pipelines that resize to it.

    Raises:
        ExportError: naming the file, the config and both sizes.
    """
    if onnx_model.input_size is None:
        return
    for pipeline, _ in entries:
        size = pipeline_output_size(pipeline)
        if size != tuple(onnx_model.input_size):
            given = "images at their own size" if size is None else f"{size[0]}x{size[1]} images"
            height, width = onnx_model.input_size
            raise ExportError(
                f"{onnx_model.onnx_file} takes {height}x{width} images (H x W) but the test "
                f"pipeline of {config_source} gives {given}; export it from this config "
                "(tools/export_onnx.py) or predict with the config it was exported from"
            )
