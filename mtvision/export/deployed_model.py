"""A deployed file run by its runtime behind the same ``predict`` as the torch model.

:class:`DeployedModel` reads the metadata every exporter writes
(:func:`~mtvision.export.deploy_metadata`: ONNX, and the phone formats), runs the file on
uint8 images in its runtime (:mod:`mtvision.export.runtimes`), finishes a phone graph's
outputs as the torch head would (:meth:`mtvision.tasks.Task.finish_phone_outputs`: top-k,
SSD decoding + NMS, argmax) and maps them back to the original images through each
head's task adapter (:meth:`mtvision.tasks.Task.from_deployed`), so its predictions have
exactly the fields of :meth:`MultiTaskModel.predict
<mtvision.models.MultiTaskModel.predict>` and every metric, the show hook and
``tools/predict.py`` take them unchanged. Registered in ``MODELS``, it also stands in
for the model under mmengine's test loop: ``tools/eval.py CONFIG FILE.onnx`` evaluates
the deployed file with the config's dataloader and metrics. ``OnnxRuntimeModel`` is its
older name, kept for configs that name it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from mtvision.errors import ExportError
from mtvision.export.deploy import read_deploy_metadata
from mtvision.export.runtimes import FINISHED_RUNTIMES, DeployedSession, default_runtime
from mtvision.registry import MODELS
from mtvision.tasks import Task, task_named, task_of


@MODELS.register_module()
class DeployedModel(BaseModel):
    """A deployed file (uint8 images in, final results out) in its runtime on the CPU.

    Args:
        onnx_file: the deployed file: ONNX (``tools/export.py --format onnx``, float or
            int8 from ``tools/quantize.py``) or a phone format whose runtime is registered
            (:data:`~mtvision.export.runtimes.RUNTIMES`).
        model: optional config dict (or built model) of the torch model the file is
            meant to stand for; its heads' names and class counts must match the
            file's (:func:`check_deploy_matches`).
        threads: intra-op threads (default: the runtime's choice).
        config_source: how to name the config in errors (e.g. its path).
        runtime: a runtime that reads the file (:class:`~mtvision.export.runtimes.DeployedSession`);
            None: the first registered for its suffix (``.onnx``: onnxruntime).

    Attributes: ``metadata`` (the file's JSON metadata), ``heads`` (``{head name: its
    metadata entry}``), ``head_tasks`` (``{head name: task adapter}``, from the
    metadata's recorded task), ``input_size`` ((H, W), or None when the graph takes
    any size), ``session`` (a ``DeployedSession``).

    Raises:
        ExportError: the file is missing, unreadable, has no mtvision metadata, or
            does not match ``model``; the message names the file (and the config).
    """

    def __init__(
        self,
        onnx_file: str | os.PathLike,
        model: dict | nn.Module | None = None,
        threads: int | None = None,
        config_source: str = "the config",
        runtime: str | None = None,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.onnx_file = os.fspath(onnx_file)
        self.metadata = read_deploy_metadata(self.onnx_file)
        size = self.metadata.get("input_size")
        self.input_size = None if size is None else (int(size[0]), int(size[1]))
        self.heads = dict(self.metadata["heads"])
        try:
            self.head_tasks: dict[str, Task] = {
                name: task_named(info["task"]) for name, info in self.heads.items()
            }
        except ValueError as error:
            raise ExportError(f"{self.onnx_file}: {error}") from None
        if model is not None:
            if isinstance(model, Mapping):
                model = MODELS.build(dict(model))
            check_deploy_matches(self.metadata, model, self.onnx_file, config_source)
        self.channels_last = self.metadata.get("input_layout", "NCHW") == "NHWC"
        self.runtime = runtime or default_runtime(self.onnx_file) or "onnxruntime"
        self.session = DeployedSession(self.onnx_file, self.runtime, threads)
        self._active = tuple(self.heads)

    # ---------------------------------------------------------- head selection

    @property
    def active_head_names(self) -> tuple[str, ...]:
        return self._active

    @contextlib.contextmanager
    def active_heads(self, names: Iterable[str] | None):
        """Restrict :meth:`predict` to ``names`` (as :meth:`MultiTaskModel.active_heads`)."""
        names = tuple(self.heads) if names is None else tuple(names)
        unknown = [name for name in names if name not in self.heads]
        if unknown:
            raise KeyError(
                f"{self.onnx_file} has no head named {unknown}; it has {list(self.heads)}"
            )
        previous, self._active = self._active, names
        try:
            yield self
        finally:
            self._active = previous

    # ------------------------------------------------------------------ running

    def run(self, images: Tensor | np.ndarray) -> dict[str, dict[str, Tensor]]:
        """The graph's outputs ``{head: {field: Tensor}}`` for uint8 (N, 3, H, W) RGB images
        (transposed here for a file that takes (N, H, W, 3)), a phone graph's finished
        into the ONNX graph's fields.

        Raises:
            ExportError: images that are not uint8 (N, 3, H, W), or whose size is not
                the graph's fixed input size (both sizes named).
        """
        array = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
            raise ExportError(
                f"{self.onnx_file} takes uint8 (N, 3, H, W) RGB images, got "
                f"{array.dtype} {tuple(array.shape)}"
            )
        if self.input_size is not None and tuple(array.shape[-2:]) != self.input_size:
            raise ExportError(
                f"{self.onnx_file} takes {self.input_size[0]}x{self.input_size[1]} images "
                f"(H x W) but got {array.shape[2]}x{array.shape[3]}: the config's test "
                "pipeline must resize to the exported input size"
            )
        if self.channels_last:
            array = array.transpose(0, 2, 3, 1)
        by_name = self.session.run(np.ascontiguousarray(array))
        input_size = (array.shape[1:3]) if self.channels_last else array.shape[2:4]
        if self.runtime in FINISHED_RUNTIMES:  # e.g. MediaPipe Tasks: one head, finished
            (head,) = self.heads
            return {head: {field: torch.from_numpy(np.asarray(v)) for field, v in by_name.items()}}
        outputs = {}
        for head, info in self.heads.items():
            fields = {
                field: torch.from_numpy(np.asarray(by_name[name]))
                for field, name in info["outputs"].items()
            }
            if info.get("phone_outputs"):
                fields = self.head_tasks[head].finish_phone_outputs(
                    fields, info, tuple(int(v) for v in input_size)
                )
            outputs[head] = fields
        return outputs

    def predict(
        self, inputs: Sequence[Tensor], data_samples: Sequence[dict] | None = None
    ) -> list[dict]:
        """One dict per image with the fields of the active heads, as
        :meth:`MultiTaskModel.predict` gives them (original pixels), plus ``meta``.

        ``inputs``: uint8 (3, H, W) RGB tensors (the test pipeline's output, each
        image at its own size); images of one size run as one batch.
        """
        samples = list(data_samples) if data_samples is not None else [{} for _ in inputs]
        if len(samples) != len(inputs):
            raise ValueError(f"got {len(samples)} data samples for {len(inputs)} images")
        predictions: list[dict] = [{} for _ in inputs]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(inputs):
            groups.setdefault(tuple(image.shape[-2:]), []).append(index)
        for indices in groups.values():
            batch = torch.stack([torch.as_tensor(inputs[i]) for i in indices])
            outputs = self.run(batch)
            group_samples = [_image_sample(samples[i], inputs[i]) for i in indices]
            for name in self._active:
                head_predictions = self._to_original(name, outputs[name], group_samples)
                for index, prediction in zip(indices, head_predictions, strict=True):
                    clash = sorted(set(predictions[index]) & set(prediction))
                    if clash:
                        raise ValueError(
                            f"head {name!r} predicts {clash}, which another active head "
                            "predicts too; run such heads one at a time with active_heads"
                        )
                    predictions[index].update(prediction)
        for prediction, sample in zip(predictions, samples, strict=True):
            if "meta" in sample:
                prediction["meta"] = sample["meta"]
        return predictions

    def _to_original(
        self, name: str, outputs: dict[str, Tensor], samples: list[dict]
    ) -> list[dict]:
        return self.head_tasks[name].from_deployed(outputs, samples, self.heads[name])

    # ------------------------------------------------- mmengine's model contract

    def forward(self, inputs, data_samples=None, mode: str = "predict"):
        if mode != "predict":
            raise ValueError(
                f"{self.onnx_file} is a deployed graph: it only predicts, not {mode!r}"
            )
        return self.predict(inputs, data_samples)

    def test_step(self, data: dict) -> list[dict]:
        """The test loop's batch (``{"inputs": uint8 (3, H, W) tensors, "data_samples"}``,
        not normalised: normalisation is inside the graph) -> predictions."""
        return self.predict(data["inputs"], data.get("data_samples"))

    val_step = test_step


@MODELS.register_module()
class OnnxRuntimeModel(DeployedModel):
    """:class:`DeployedModel` under its older name (configs and scripts name it)."""


def _image_sample(sample: dict, image: Tensor) -> dict:
    """The sample with ``meta["img_shape"]`` set to the image's size when absent."""
    meta = sample.get("meta")
    if meta is not None and "img_shape" in meta:
        return sample
    return {**sample, "meta": {**(meta or {}), "img_shape": tuple(image.shape[-2:])}}


def check_deploy_matches(
    metadata: dict, model: nn.Module, onnx_file: str, config_source: str = "the config"
) -> None:
    """Raise :class:`ExportError` naming both sides when the deployed file's heads (names,
    tasks, class counts) differ from ``model``'s."""
    heads = getattr(model, "heads", {})
    config_heads = {name: int(head.num_classes) for name, head in heads.items()}
    file_heads = {name: int(info["num_classes"]) for name, info in metadata["heads"].items()}
    if set(config_heads) != set(file_heads):
        raise ExportError(
            f"{onnx_file} has the heads {sorted(file_heads)} but {config_source} builds "
            f"{sorted(config_heads)}"
        )
    for name, num_classes in file_heads.items():
        task = metadata["heads"][name]["task"]
        try:
            config_task = task_of(heads[name], name)
        except ValueError as error:
            raise ExportError(f"{config_source}: {error}") from None
        if config_task is not task_named(task):
            raise ExportError(
                f"{onnx_file}: head {name!r} is {task} but in {config_source} it is "
                f"{config_task.name}"
            )
        if num_classes != config_heads[name]:
            raise ExportError(
                f"{onnx_file}: head {name!r} has {num_classes} classes but {config_source} "
                f"gives it {config_heads[name]}"
            )
