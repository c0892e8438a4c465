"""The deployed graph: uint8 images in, final results out, for any set of heads.

:class:`DeployModel` puts a :class:`~mtvision.models.MultiTaskModel` (every
mtvision model; a single-task model has one head) between the cast and
normalisation of uint8 RGB images and each head's ``deploy`` post-processing
(top-k; decoding + class-aware NMS; upsampling + argmax), so
:func:`export_deploy_onnx` writes one ONNX file whose outputs are what a user
reads: no NumPy post-processing after onnxruntime, as with TFLite's
``TFLite_Detection_PostProcess`` graphs or mmdeploy's end-to-end models.

Output names (see ``docs/export.md``): a head's fields (``scores``/``labels``;
``boxes``/``scores``/``labels``/``num_detections``; ``mask`` and optionally
``seg_logits``) as they are for a single-head model, ``"<head>.<field>"`` when
the model has several heads. The file's ``metadata_props`` hold, under the key
``"mtvision"``, a JSON description (input size, mean/std, heads with their
task, classes and outputs) that :func:`read_deploy_metadata` returns. What
depends on a head's kind (its ``deploy`` arguments, metadata entries, outputs
that follow the input size) is its task adapter's (:mod:`mtvision.tasks`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence

import onnx
import torch
from torch import Tensor, nn

from mtvision.errors import ExportError
from mtvision.export.onnx_export import trace_to_onnx
from mtvision.layers.same_padding import SamePad2d
from mtvision.tasks import Task, task_of
from mtvision.utils.atomic_files import atomic_write_bytes

METADATA_KEY = "mtvision"
METADATA_FORMAT = 1
INPUT_NAME = "images"


class DeployModel(nn.Module):
    """``model`` as deployed: uint8 (N, 3, H, W) RGB images -> each head's final outputs.

    Args:
        model: a :class:`~mtvision.models.MultiTaskModel` whose heads declare a task
            adapter (``task``, :mod:`mtvision.tasks`) and have a
            ``deploy(outputs, input_size, ...)`` method; its data preprocessor's mean
            and std are baked in. Run in eval mode.
        topk: classes returned by a classification head.
        seg_logits: also return a segmentation head's upsampled logits.

    ``forward(images)`` returns a tuple in :attr:`output_names` order (ONNX outputs
    are positional); :meth:`outputs` returns ``{head: {field: Tensor}}``.

    Raises:
        ExportError: a head without ``task``/``deploy``, or a preprocessor without
            mean/std or one that swaps channels.
    """

    def __init__(
        self,
        model: nn.Module,
        topk: int = 5,
        seg_logits: bool = False,
        phone: bool = False,
        class_map: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        heads = getattr(model, "heads", None)
        if heads is None or not hasattr(model, "backbone"):
            raise ExportError(f"{type(model).__name__} is not a MultiTaskModel (backbone + heads)")
        self.model = model
        self.head_names = tuple(model.active_head_names)
        self.tasks: dict[str, Task] = {}
        for name in self.head_names:
            try:
                task = task_of(heads[name], name)
            except ValueError:
                task = None
            if task is None or not hasattr(heads[name], "deploy"):
                raise ExportError(
                    f"head {name!r} ({type(heads[name]).__name__}) has no deployable "
                    "post-processing (a task adapter and a deploy method)"
                )
            self.tasks[name] = task
        self.topk = int(topk)
        self.seg_logits = bool(seg_logits)
        self.phone = bool(phone)
        self.class_map = bool(class_map)
        self.channels_last = bool(channels_last)
        mean, std = _normalisation(model)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def outputs(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """``{head: {field: Tensor}}`` of the uint8 (N, 3, H, W) batch ((N, H, W, 3) with
        ``channels_last``)."""
        if self.channels_last:
            # Normalised while channels last, then permuted: LiteRT's converter (which works
            # channels last) then cancels the permute against its own layout change.
            mean, std = self.mean.view(1, 1, 1, 3), self.std.view(1, 1, 1, 3)
            inputs = ((images.float() - mean) / std).permute(0, 3, 1, 2)
        else:
            inputs = (images.float() - self.mean) / self.std
        input_size = (inputs.shape[-2], inputs.shape[-1])
        features = self.model.backbone(inputs)
        options = {
            "topk": self.topk,
            "seg_logits": self.seg_logits,
            "phone": self.phone,
            "class_map": self.class_map,
        }
        return {
            name: self.model.heads[name].deploy(
                self.model.heads[name](features), input_size, **task.deploy_options(**options)
            )
            for name, task in self.tasks.items()
        }

    def example_images(self, input_size: Sequence[int], batch: int = 1, seed: int = 0) -> Tensor:
        """Random uint8 images in the layout :meth:`forward` takes."""
        generator = torch.Generator().manual_seed(seed)
        height, width = (int(v) for v in input_size)
        shape = (batch, height, width, 3) if self.channels_last else (batch, 3, height, width)
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)

    def output_map(self, images: Tensor) -> dict[str, dict[str, str]]:
        """``{head: {field: ONNX output name}}`` for a batch like ``images``."""
        with torch.no_grad():
            outputs = self.outputs(images)
        several = len(outputs) > 1
        return {
            head: {field: f"{head}.{field}" if several else field for field in fields}
            for head, fields in outputs.items()
        }

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(t for fields in self.outputs(images).values() for t in fields.values())


def _normalisation(model: nn.Module) -> tuple[list[float], list[float]]:
    preprocessor = getattr(model, "data_preprocessor", None)
    mean = getattr(preprocessor, "mean", None)
    std = getattr(preprocessor, "std", None)
    if mean is None or std is None:
        raise ExportError(f"{type(model).__name__}'s data_preprocessor does not normalise")
    if getattr(preprocessor, "_channel_conversion", False):
        raise ExportError(
            "the data_preprocessor swaps BGR/RGB; the deployed graph takes RGB: "
            "export a model that reads RGB"
        )
    return mean.flatten().tolist(), std.flatten().tolist()


def export_deploy_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] | None,
    classes: Mapping[str, Sequence[str] | None] | None = None,
    topk: int = 5,
    seg_logits: bool = False,
    opset: int = 17,
    source: Mapping[str, str] | None = None,
) -> str:
    """Write ``model``'s deployed graph (:class:`DeployModel`) to an ONNX file at ``path``.

    Args:
        model: a MultiTaskModel (any heads); put in eval mode for the trace and restored.
        path: the ONNX file, written atomically after ``onnx.checker`` passed.
        input_size: (H, W) the graph is fixed to; ``None`` makes height and width
            dynamic, which only a model whose tasks allow it (segmentation; anchors
            depend on the input size, a classifier is trained at one) with PyTorch's
            symmetric padding allows (TF-"same" padding amounts are fixed when traced).
        classes: head name -> class names, recorded in the metadata (``None``: ids only).
        topk, seg_logits: see :class:`DeployModel`.
        opset: ONNX opset (NonMaxSuppression needs >= 11).
        source: recorded as the metadata's ``source`` (e.g. config and checkpoint paths).

    Returns ``path`` as a string.

    Raises:
        ExportError: dynamic size for a model with a head that needs a fixed size or
            with TF-"same" padding, a bad
            ``input_size``, or any :class:`DeployModel` error.
    """
    path = os.fspath(path)
    deploy = DeployModel(model, topk=topk, seg_logits=seg_logits)
    if input_size is None:
        fixed = [name for name, task in deploy.tasks.items() if task.fixed_input_size]
        if fixed:
            raise ExportError(
                f"heads {fixed} need a fixed input size (detection anchors and a "
                "classifier's training size); pass input_size=(H, W)"
            )
        same_padded = [name for name, m in model.named_modules() if isinstance(m, SamePad2d)]
        if same_padded:
            raise ExportError(
                f"{type(model).__name__} pads TF-'same' ({same_padded[0]}, ...): the amounts "
                "depend on the input size and are fixed when traced; pass input_size=(H, W)"
            )
        example_size = (256, 256)
    else:
        example_size = tuple(int(v) for v in input_size)
        if len(example_size) != 2 or min(example_size) < 1:
            raise ExportError(f"input_size must be (H, W) positive, got {tuple(input_size)}")
    example = torch.randint(0, 256, (2, 3, *example_size), dtype=torch.uint8)

    was_training = model.training
    model.eval()
    try:
        output_map = deploy.output_map(example)
        output_names = [name for fields in output_map.values() for name in fields.values()]
        dynamic_axes = {INPUT_NAME: {0: "batch"}}
        if input_size is None:
            dynamic_axes[INPUT_NAME].update({2: "height", 3: "width"})
        for head, fields in output_map.items():
            for field, name in fields.items():
                dynamic_axes[name] = {0: "batch"}
                axes = deploy.tasks[head].spatial_axes(field)
                if input_size is None and axes is not None:
                    dynamic_axes[name].update({axes[0]: "height", axes[1]: "width"})
        data = trace_to_onnx(deploy, example, opset, [INPUT_NAME], output_names, dynamic_axes)
    finally:
        model.train(was_training)

    graph = onnx.load_from_string(data)
    metadata = deploy_metadata(
        deploy,
        None if input_size is None else example_size,
        output_map,
        classes=classes,
        source=source,
    )
    onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(metadata)})
    onnx.checker.check_model(graph, full_check=True)
    atomic_write_bytes(path, graph.SerializeToString())
    return path


def deploy_metadata(
    deploy: DeployModel,
    input_size: Sequence[int] | None,
    output_map: Mapping[str, Mapping[str, str]],
    classes: Mapping[str, Sequence[str] | None] | None = None,
    source: Mapping[str, str] | None = None,
) -> dict:
    """The JSON description every deployed file carries (ONNX ``metadata_props``, and the
    phone formats' own metadata): input size and layout, mean/std, each head's task,
    class count and names, output names (``output_map``: ``{head: {field: name}}``) and
    its task's entries (:meth:`~mtvision.tasks.Task.deploy_metadata`; for a ``phone``
    graph what finishing its outputs needs), and ``source`` (config, checkpoint).

    Raises:
        ExportError: a head's class names do not match its class count.
    """
    model = deploy.model
    heads = {}
    for name, task in deploy.tasks.items():
        head = model.heads[name]
        names = None if classes is None or classes.get(name) is None else list(classes[name])
        if names is not None and len(names) != head.num_classes:
            raise ExportError(
                f"head {name!r} has {head.num_classes} classes but {len(names)} class names "
                f"were given"
            )
        heads[name] = {
            "task": task.name,
            "num_classes": int(head.num_classes),
            "classes": names,
            "outputs": dict(output_map[name]),
            **task.deploy_metadata(
                head,
                topk=deploy.topk,
                phone=deploy.phone,
                input_size=None if input_size is None else tuple(input_size),
            ),
        }
        if deploy.phone:
            heads[name]["phone_outputs"] = True
    metadata = {
        "format": METADATA_FORMAT,
        "input_name": INPUT_NAME,
        "input_size": None if input_size is None else [int(v) for v in input_size],
        "mean": deploy.mean.flatten().tolist(),
        "std": deploy.std.flatten().tolist(),
        "heads": heads,
        "source": dict(source or {}),
    }
    if deploy.channels_last:
        metadata["input_layout"] = "NHWC"
    return metadata


def read_deploy_metadata(path: str | os.PathLike) -> dict:
    """The mtvision metadata of a deployed file, read by its format
    (:func:`deployed_format`, :data:`METADATA_READERS`; ``.onnx``: :func:`read_onnx_metadata`).

    Raises:
        ExportError: the format's reader's error (missing or unreadable file, no mtvision
            metadata); names the file.
    """
    path = os.fspath(path)
    reader = METADATA_READERS[deployed_format(path)]
    if isinstance(reader, str):
        module, _, function = reader.partition(":")
        reader = getattr(importlib.import_module(module), function)
    return reader(path)


#: The file identifiers of the flatbuffer formats (bytes 4..8 of the file).
_IDENTIFIERS = {b"TFL3": ".tflite", b"ET12": ".pte"}


def deployed_format(path: str | os.PathLike) -> str:
    """A deployed file's format as its usual suffix (``".onnx"``, ``".tflite"``, ``".pte"``):
    its own suffix when a reader is registered for it, else its flatbuffer identifier,
    else ONNX (a protobuf has none), whose reader then says what is wrong."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in METADATA_READERS:
        return suffix
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        return ".onnx"
    return _IDENTIFIERS.get(head[4:8], ".onnx")


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The ``"mtvision"`` metadata of a deployed ONNX file (see :func:`export_deploy_onnx`).

    Raises:
        ExportError: the file cannot be read as ONNX, or has no mtvision metadata
            (e.g. a raw-output export); the message names the file.
    """
    path = os.fspath(path)
    try:
        graph = onnx.load(path, load_external_data=False)
    except FileNotFoundError:
        raise ExportError(f"{path}: no such ONNX file") from None
    except Exception as error:  # onnx raises DecodeError and friends for a corrupt file
        raise ExportError(f"{path}: not a readable ONNX file ({error})") from None
    props = {prop.key: prop.value for prop in graph.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(
            f"{path}: no '{METADATA_KEY}' metadata; export it with tools/export_onnx.py "
            "(the deployed graph with post-processing)"
        )
    try:
        metadata = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: its '{METADATA_KEY}' metadata is not JSON ({error})") from None
    return metadata


#: suffix -> the reader of that format's mtvision metadata (a function, or
#: ``"module:function"`` imported on first use, so a format's optional runtime is imported
#: only for its own files).
METADATA_READERS: dict = {
    ".onnx": read_onnx_metadata,
    ".tflite": "mtvision.export.litert_metadata:read_tflite_metadata",
    ".pte": "mtvision.export.executorch_export:read_pte_metadata",
}
