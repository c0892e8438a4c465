"""mtvision's phone files in the end-to-end benchmark: a task's model exported to LiteRT
(``.tflite``) and ExecuTorch (``.pte``), float and int8, each run as an app gets it.

Files, from the same model object the ONNX rows export (:func:`export_phone_files`):

- ``tflite``: :func:`~mtvision.export.litert_export.export_deploy_tflite` (float), then
  :func:`~mtvision.export.litert_quantize.quantize_tflite` (static int8,
  ai-edge-quantizer) calibrated on the benchmark's images; run in LiteRT
  (``ai_edge_litert``, XNNPACK).
- ``executorch``: :func:`~mtvision.export.executorch_export.export_deploy_executorch`,
  float, and int8 with ``calibration_images`` (PT2E, XNNPACK quantizer); run in
  ExecuTorch's runtime (XNNPACK delegate).

The timed call (:func:`phone_contender`) is :meth:`DeployedModel.run
<mtvision.export.deployed_model.DeployedModel.run>` on the (1, 3, H, W) uint8 image: the
transpose to the file's NHWC input, the runtime, and the finishing an app does after it
(:meth:`~mtvision.tasks.Task.finish_phone_outputs`: top-5 of the probabilities; SSD
decoding + NMS of the raw outputs; argmax, or the class map the file returns). Files are
batch 1 at the benchmark's input size. A format whose extra is not importable, or a
file whose export fails, is left out with one note line (:func:`phone_formats_available`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mtvision.benchmarks.contenders import Contender, chw_batch
from mtvision.benchmarks.results import E2E_TOPK, HeadOutputs
from mtvision.errors import ExportError


class PhoneFormat(NamedTuple):
    """One phone format: its runtime (:data:`mtvision.export.runtimes.RUNTIMES`), the file
    suffix, its name in tables, the modules its export, int8 and runtime import, and
    the extra that installs them."""

    runtime: str
    suffix: str
    title: str
    modules: tuple[str, ...]
    extra: str


#: The phone formats by ``tools/export.py --format`` name.
PHONE_FORMATS = {
    "tflite": PhoneFormat(
        "litert",
        ".tflite",
        "LiteRT",
        ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"),
        "pip install -e '.[litert]'",
    ),
    "executorch": PhoneFormat(
        "executorch", ".pte", "ExecuTorch", ("executorch",), "pip install -e '.[executorch]'"
    ),
}
PRECISIONS = ("float", "int8")


def phone_formats_available(formats: Sequence[str]) -> tuple[list[str], list[str]]:
    """The formats of ``formats`` whose modules import, and one note line per format
    (the runtime's version, or what to install)."""
    available, notes = [], []
    for name in formats:
        phone = PHONE_FORMATS[name]
        missing = []
        for module in phone.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            notes.append(
                f"{phone.title} rows left out: {', '.join(missing)} not installed "
                f"(optional: {phone.extra})"
            )
            continue
        available.append(name)
        notes.append(f"{phone.title} rows: {phone.suffix} files by mtvision, {_version(phone)}")
    return available, notes


def _version(phone: PhoneFormat) -> str:
    module = importlib.import_module(phone.modules[-1])
    version = getattr(module, "__version__", None)
    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as distribution_version

        try:
            version = distribution_version(phone.modules[-1].replace("_", "-"))
        except PackageNotFoundError:
            version = "version unknown"
    return f"{phone.modules[-1]} {version}"


def export_phone_files(
    model: nn.Module,
    name: str,
    size: int,
    images: list[np.ndarray],
    work_dir: Path,
    fmt: str,
    class_map: bool = True,
) -> tuple[dict[str, Path], list[str]]:
    """``model``'s float and int8 files of ``fmt`` (``"tflite"`` or ``"executorch"``) at
    ``size`` x ``size``, int8 calibrated on ``images`` (HWC uint8).

    ``class_map``: segmentation heads return the class map (argmax inside, as Google's
    DeepLab files and mtvision's ONNX graph), not the logits.

    Returns ``({precision: path}, notes)``: a precision whose export fails (an
    :class:`~mtvision.errors.ExportError`) is missing from the dict, with a note line
    giving the exporter's message; the int8 ``.tflite`` needs the float one.
    """
    # The exporters' progress lines (litert-torch prints to stdout) go to stderr, away
    # from the tables.
    with contextlib.redirect_stdout(sys.stderr):
        return _export_phone_files(model, name, size, images, work_dir, fmt, class_map)


def _export_phone_files(model, name, size, images, work_dir, fmt, class_map):
    phone = PHONE_FORMATS[fmt]
    calibration = [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in images]
    files: dict[str, Path] = {}
    notes = []
    for precision in PRECISIONS:
        path = work_dir / f"{name}{'.int8' if precision == 'int8' else ''}{phone.suffix}"
        try:
            if fmt == "tflite" and precision == "float":
                from mtvision.export.litert_export import export_deploy_tflite

                export_deploy_tflite(model, path, (size, size), topk=E2E_TOPK, class_map=class_map)
            elif fmt == "tflite":
                from mtvision.export.litert_quantize import quantize_tflite

                if "float" not in files:
                    notes.append(f"{phone.title} int8 row left out: no float .tflite to quantise")
                    continue
                quantize_tflite(files["float"], path, calibration)
            else:
                from mtvision.export.executorch_export import export_deploy_executorch

                export_deploy_executorch(
                    model,
                    path,
                    (size, size),
                    topk=E2E_TOPK,
                    class_map=class_map,
                    calibration_images=calibration if precision == "int8" else None,
                )
        except ExportError as error:
            notes.append(f"{phone.title} {precision} row left out: {error}")
            continue
        files[precision] = path
    return files, notes


def phone_contender(key: str, name: str, path: Path, runtime: str, image: np.ndarray) -> Contender:
    """``DeployedModel(path, runtime=runtime, threads=N).run`` on the image as a (1, 3, H, W)
    batch (made once, as for the ONNX rows): the NHWC transpose, the runtime and the
    finishing (top-k, SSD decoding + NMS, argmax), what an app gets. Its result: each
    head's finished outputs, the ONNX graph's fields."""
    from mtvision.export.deployed_model import DeployedModel

    batch = chw_batch(image)
    heads: dict = {}

    def make(threads: int) -> Callable[[], object]:
        deployed = DeployedModel(path, runtime=runtime, threads=threads)
        heads.update(deployed.head_tasks)
        return lambda: deployed.run(batch)

    def result(outputs: dict) -> dict[str, HeadOutputs]:
        return {head: HeadOutputs(heads[head], fields) for head, fields in outputs.items()}

    return Contender(key, name, make, result)


class PhoneRows(NamedTuple):
    """A task's phone contenders, their agreement checks ((expected key, actual key,
    label), as :class:`~mtvision.benchmarks.end_to_end.Task`), the int8 contenders' keys
    with a label naming runtime and format, and the notes."""

    contenders: list[Contender]
    comparisons: list[tuple[str, str, str]]
    int8_files: list[tuple[str, str]]
    notes: list[str]


def phone_rows(
    model: nn.Module,
    name: str,
    size: int,
    images: list[np.ndarray],
    work_dir: Path,
    formats: Sequence[str],
    prefix: str = "mtvision",
    label: str = "",
) -> PhoneRows:
    """Export ``model`` in each available format of ``formats`` (:func:`export_phone_files`)
    and make its contenders, keyed ``"<prefix> litert float"``, ``"<prefix> executorch
    int8"``, ...; the agreement checks compare each format's float file with
    ``"<prefix> ort float"`` and its int8 file with its float file, labelled
    ``"<label>litert float vs ort float"`` (``{head}`` in ``label``: the head's name,
    :func:`~mtvision.benchmarks.results.agreement_lines`)."""
    available, notes = phone_formats_available(formats)
    contenders, comparisons, int8_files = [], [], []
    for fmt in available:
        phone = PHONE_FORMATS[fmt]
        files, export_notes = export_phone_files(
            model, f"{name}_{fmt}", size, images, work_dir, fmt
        )
        notes += export_notes
        for precision, path in files.items():
            key = f"{prefix} {phone.runtime} {precision}"
            contenders.append(
                phone_contender(
                    key,
                    f"{prefix} {phone.title} {precision} ({phone.suffix}, DeployedModel.run)",
                    path,
                    phone.runtime,
                    images[0],
                )
            )
            if precision == "int8":
                int8_files.append((key, f"{phone.title} {phone.suffix}"))
        if "float" in files:
            comparisons.append(
                (
                    f"{prefix} {phone.runtime} float",
                    f"{prefix} ort float",
                    f"{label}{phone.runtime} float vs ort float",
                )
            )
        if "float" in files and "int8" in files:
            comparisons.append(
                (
                    f"{prefix} {phone.runtime} int8",
                    f"{prefix} {phone.runtime} float",
                    f"{label}{phone.runtime} int8 vs float",
                )
            )
    return PhoneRows(contenders, comparisons, int8_files, notes)
