"""Export, verify, then commit: an ONNX file replaces the previous one only after
onnxruntime has been compared with torch on it and agreed.

:func:`export_deployed` writes the deployed graph (:func:`~mtvision.export.export_deploy_onnx`)
to a temporary file beside the target (:func:`~mtvision.utils.atomic_files.staged_file`),
runs test images through torch and onnxruntime (:func:`deployed_agreement`, one
number per head from its task adapter, :mod:`mtvision.tasks`), and renames the file over the
target only when every head agrees at least ``min_agreement``. A rejected export is
removed: the previous file stays byte for byte what it was, and a script that
treats the error as "keep the old model" keeps the right one.
:func:`export_raw_checked` does the same for the raw tensor forward, checked by the
largest difference relative to the outputs' scale.

Used by ``tools/export_onnx.py``; the Python API does what the command line does.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mtvision.errors import ExportError
from mtvision.export.deploy import DeployModel, export_deploy_onnx
from mtvision.export.deployed_model import DeployedModel
from mtvision.export.onnx_export import (
    Uint8Input,
    check_onnx_matches,
    export_onnx,
    flatten_outputs,
)
from mtvision.export.runtimes import default_runtime
from mtvision.tasks.base import Task
from mtvision.utils.atomic_files import staged_file

__all__ = [
    "EXPORT_FORMATS",
    "ExportMismatchError",
    "HeadAgreement",
    "RawCheck",
    "deployed_agreement",
    "export_deployed",
    "export_raw_checked",
    "export_writer",
]


class ExportMismatchError(ExportError):
    """onnxruntime's outputs differ from torch's by more than allowed; the rejected file
    was not written (the previous file, if any, is unchanged)."""


@dataclass(frozen=True)
class HeadAgreement:
    """How one head of a deployed file follows torch on the test images.

    Attributes:
        task: the head's task adapter (from the file's metadata).
        agreement: mean over images of :func:`~mtvision.export.parity.head_agreement`
            (share of equal top-1 labels, matched detections or equal pixels), in [0, 1].
        images: how many images were compared.
        max_score_difference: largest |torch - onnxruntime| score where the task has one
            worth printing (classification's top-k), else None.
    """

    task: Task
    agreement: float
    images: int
    max_score_difference: float | None


@dataclass(frozen=True)
class RawCheck:
    """The raw-forward check: ``max_diff`` = max |onnxruntime - torch| over every output
    on a random batch of ``batch`` images; ``scale`` = max |torch output|."""

    max_diff: float
    scale: float
    batch: int


def deployed_agreement(
    model: nn.Module,
    onnx_file: str | os.PathLike,
    images: Sequence[Tensor],
    topk: int = 5,
    seg_logits: bool = False,
    runtime: str | None = None,
) -> dict[str, HeadAgreement]:
    """Run each uint8 (3, H, W) image through ``model``'s :class:`DeployModel` (torch)
    and through the deployed file ``onnx_file`` (in ``runtime``, default: its format's,
    :class:`~mtvision.export.DeployedModel`, which finishes a phone graph's outputs);
    return ``{head: HeadAgreement}``.

    ``topk`` and ``seg_logits`` must be those the file was exported with.
    Raises ``ValueError`` without images.
    """
    if not images:
        raise ValueError("deployed_agreement needs at least one image")
    deployed = DeployedModel(onnx_file, runtime=runtime)
    if any(info.get("phone_outputs") for info in deployed.heads.values()):
        seg_logits = False  # a phone graph's outputs are finished into the mask only
    was_training = model.training
    torch_model = DeployModel(model, topk=topk, seg_logits=seg_logits).eval()
    tasks = deployed.head_tasks
    values: dict[str, list[tuple[float, float | None]]] = {name: [] for name in tasks}
    try:
        for image in images:
            batch = image.unsqueeze(0)
            with torch.no_grad():
                expected = torch_model.outputs(batch)
            actual = deployed.run(batch)
            for name, task in tasks.items():
                values[name].append(
                    (
                        task.agreement(expected[name], actual[name]),
                        task.max_score_difference(expected[name], actual[name]),
                    )
                )
    finally:
        model.train(was_training)
    result = {}
    for name, pairs in values.items():
        differences = [v[1] for v in pairs if v[1] is not None]
        result[name] = HeadAgreement(
            task=tasks[name],
            agreement=sum(v[0] for v in pairs) / len(pairs),
            images=len(pairs),
            max_score_difference=max(differences) if differences else None,
        )
    return result


#: format name -> its deployed-file writer ``(model, path, input_size, *, classes, topk,
#: seg_logits, source, **options)``: a function, or ``"module:function"`` imported on first
#: use (a phone format's converter is an optional extra).
EXPORT_FORMATS: dict = {
    "onnx": export_deploy_onnx,
    "tflite": "mtvision.export.litert_export:export_deploy_tflite",
    "executorch": "mtvision.export.executorch_export:export_deploy_executorch",
}


def export_writer(format: str):
    """The writer of ``format`` (:data:`EXPORT_FORMATS`).

    Raises:
        ExportError: an unknown format (the known ones listed).
    """
    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}; use one of {list(EXPORT_FORMATS)}")
    writer = EXPORT_FORMATS[format]
    if isinstance(writer, str):
        module, _, function = writer.partition(":")
        writer = getattr(importlib.import_module(module), function)
    return writer


def _least(min_agreement: float | Mapping[str, float], head: str) -> float:
    if isinstance(min_agreement, Mapping):
        return float(min_agreement.get(head, 0.99))
    return float(min_agreement)


def _not_replaced(path: str) -> str:
    return f"{path} was left as it was" if os.path.isfile(path) else "nothing was written"


def export_deployed(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] | None,
    *,
    classes: Mapping[str, Sequence[str] | None] | None = None,
    topk: int = 5,
    seg_logits: bool = False,
    opset: int = 17,
    source: Mapping[str, str] | None = None,
    check_images: Sequence[Tensor] = (),
    min_agreement: float | Mapping[str, float] = 0.99,
    format: str = "onnx",
    format_options: Mapping | None = None,
    runtime: str | None = None,
) -> dict[str, HeadAgreement]:
    """Export ``model``'s deployed graph to ``path``, verified before it is committed.

    Args:
        model, input_size, classes, topk, seg_logits, opset, source: as for
            :func:`~mtvision.export.export_deploy_onnx` (``opset``: ONNX only).
        check_images: uint8 (3, H, W) test images (at ``input_size``) compared in torch
            and the file's runtime; none: the file is committed after the writer's own
            checks only.
        min_agreement: the least :attr:`HeadAgreement.agreement` every head must reach,
            or ``{head: least}`` (heads not named: 0.99).
        format: a name of :data:`EXPORT_FORMATS` (``"onnx"``, or a phone format).
        format_options: further keyword arguments of that format's writer.
        runtime: the runtime that checks the file (default: its format's first).

    Returns ``{head: HeadAgreement}`` (empty without ``check_images``).

    Raises:
        ExportMismatchError: a head below ``min_agreement``; ``path`` is untouched
            (the previous file stays, the rejected one is removed).
        ExportError: as :func:`~mtvision.export.export_deploy_onnx`.
        OutputError: ``path`` cannot be written (full disk, permissions).
    """
    shown = os.fspath(path)
    writer = export_writer(format)
    options = dict(format_options or {})
    if format == "onnx":
        options.setdefault("opset", opset)
    with staged_file(shown) as staged:
        writer(
            model,
            staged,
            input_size,
            classes=classes,
            topk=topk,
            seg_logits=seg_logits,
            source=source,
            **options,
        )
        if not check_images:
            return {}
        agreements = deployed_agreement(
            model, staged, check_images, topk, seg_logits, runtime=runtime
        )
        low = {
            name: round(head.agreement, 4)
            for name, head in agreements.items()
            if head.agreement < _least(min_agreement, name)
        }
        if low:
            raise ExportMismatchError(
                f"{shown}: {runtime or default_runtime(staged)} agrees with torch on {low} "
                f"({len(check_images)} "
                f"images), below --min-agreement {min_agreement}; the export was rejected "
                f"and {_not_replaced(shown)}"
            )
    return agreements


def export_raw_checked(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] = (224, 224),
    *,
    with_preprocess: bool = False,
    static_batch: bool = False,
    opset: int = 17,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> RawCheck:
    """Export ``model``'s raw tensor forward (:func:`~mtvision.export.export_onnx`) to
    ``path``, verified on a random batch before it is committed.

    ``with_preprocess`` wraps the model in :class:`~mtvision.export.Uint8Input`
    (uint8 input, normalisation inside); ``static_batch`` fixes the batch to 1.
    The file replaces ``path`` only when max |onnxruntime - torch| is at most
    ``tolerance`` x max |torch output|.

    Raises:
        ExportMismatchError: the difference is larger; ``path`` is untouched.
        OutputError: ``path`` cannot be written.
    """
    shown = os.fspath(path)
    height, width = (int(v) for v in input_size)
    generator = torch.Generator().manual_seed(seed)
    batch = 1 if static_batch else 2
    if with_preprocess:
        model = Uint8Input.from_data_preprocessor(model).eval()
        input_dtype = torch.uint8
        inputs = torch.randint(
            0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator
        )
    else:
        input_dtype = torch.float32
        inputs = torch.randn(batch, 3, height, width, generator=generator)
    with staged_file(shown) as staged:
        export_onnx(
            model,
            staged,
            input_shape=(1, 3, height, width),
            opset=opset,
            dynamic_batch=not static_batch,
            input_dtype=input_dtype,
        )
        max_diff = check_onnx_matches(model, staged, inputs)
        with torch.no_grad():
            outputs = model(inputs)
        scale = max(float(t.abs().max()) for t in flatten_outputs(outputs)[1])
        if max_diff > tolerance * max(scale, 1e-12):
            raise ExportMismatchError(
                f"{shown}: onnxruntime differs from torch by {max_diff:.3g}, more than "
                f"{tolerance:g} x max |output| {scale:.3g}; the export was rejected and "
                f"{_not_replaced(shown)}"
            )
    return RawCheck(max_diff=max_diff, scale=scale, batch=batch)
