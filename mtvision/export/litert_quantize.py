"""Static int8 quantisation of a deployed float ``.tflite`` with ``ai-edge-quantizer``.

:func:`quantize_tflite` calibrates the activation ranges (min/max) on uint8 NHWC images
from the config's test pipeline and quantises every op LiteRT has an int8 kernel for
(``ai_edge_quantizer.recipe.static_wi8_ai8``: int8 weights per output channel, int8
activations, asymmetric as LiteRT's int8 kernels want); the uint8 image input and
the outputs stay as they were (the quantiser puts the (de)quantize ops at the edges),
so the runtime and the metadata need no change; a class map's ARG_MAX then reads the
int8 logits (:func:`~mtvision.export.litert_rewrite.argmax_without_dequantize`, as in
Google's int8 DeepLab files). The trial behind issue 18 measured
this path at Google's own int8 accuracy and speed, where litert-torch's PT2E int8 broke
the classifier.

The int8 file keeps the float file's mtvision metadata with a ``quantization`` record
(calibration images, scheme, ``source`` = the float file) and gets MediaPipe's metadata
again (:func:`~mtvision.export.litert_export.add_phone_metadata`; the quantiser
re-serialises the model and drops the label files MediaPipe appends). A file that
already has a ``quantization`` record is refused, naming the float file it came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable

import numpy as np

from mtvision.errors import ExportError
from mtvision.export.litert_export import add_phone_metadata
from mtvision.export.litert_metadata import (
    INSTALL_HINT,
    read_tflite_metadata,
    tflite_metadata_entries,
    with_mtvision_metadata,
)
from mtvision.export.litert_rewrite import argmax_without_dequantize
from mtvision.utils.atomic_files import atomic_write_bytes, staged_file

#: The signature LiteRT's converter names the one function of a converted module.
SIGNATURE = "serving_default"
#: MediaPipe's metadata entry (rewritten for the int8 file).
MEDIAPIPE_ENTRY = "TFLITE_METADATA"


def check_float_tflite(path: str | os.PathLike) -> dict:
    """The mtvision metadata of the float ``.tflite`` at ``path``.

    Raises:
        ExportError: no such file, not a .tflite with mtvision metadata, or already
            quantised (one line naming the float file it came from).
    """
    path = os.fspath(path)
    metadata = read_tflite_metadata(path)
    record = metadata.get("quantization")
    if record:
        origin = record.get("source") or "its float .tflite"
        raise ExportError(
            f"{path} is already int8 ({record.get('calibration_images', '?')} calibration "
            f"images); quantise the float file it came from, {origin}"
        )
    return metadata


def quantize_tflite(
    source: str | os.PathLike,
    target: str | os.PathLike,
    calibration_images: Iterable,
    on_image: Callable[[int], object] | None = None,
) -> dict:
    """Quantise the float ``.tflite`` ``source`` to static int8 and write it to ``target``.

    Args:
        source: a float deployed .tflite (:func:`~mtvision.export.litert_export.export_deploy_tflite`).
        target: the int8 file; written beside it, read back (metadata, LiteRT loads it)
            and only then renamed over it.
        calibration_images: uint8 RGB images at the file's input size, (3, H, W) or
            (N, 3, H, W) (numpy or torch; the config's test pipeline output), or
            (H, W, 3); each is fed as one (1, H, W, 3) batch.
        on_image: called with 1 after each calibration image (progress).

    Returns:
        The ``quantization`` record written into the int8 file's metadata.

    Raises:
        ExportError: ``source`` is not a float mtvision .tflite (:func:`check_float_tflite`),
            ai-edge-quantizer is not installed (install hint), an image of another size,
            or the quantised file does not load.
        ValueError: no calibration image.
        OutputError: ``target`` cannot be written.
    """
    source, target = os.fspath(source), os.fspath(target)
    metadata = check_float_tflite(source)
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise ExportError(
            f"quantising .tflite files needs ai-edge-quantizer ({INSTALL_HINT})"
        ) from None
    height, width = metadata["input_size"]
    input_name = metadata.get("input_name", "images")
    feeds = []
    for image in calibration_images:
        for nhwc in _nhwc_batches(image):
            if nhwc.shape[1:3] != (height, width):
                raise ExportError(
                    f"{source} takes {height}x{width} images; a calibration image is "
                    f"{nhwc.shape[1]}x{nhwc.shape[2]}"
                )
            feeds.append({input_name: nhwc})
            if on_image is not None:
                on_image(1)
    if not feeds:
        raise ValueError(f"{source}: no calibration images; quantisation needs at least one")
    with open(source, "rb") as file:
        content = file.read()
    engine = quantizer.Quantizer(content, recipe.static_wi8_ai8())
    ranges = engine.calibrate({SIGNATURE: feeds}, num_threads=1)
    quantized = bytes(engine.quantize(ranges, enable_progress_report=False).quantized_model)
    # The quantiser has no int8 ARG_MAX: the class map's argmax reads the int8 logits.
    quantized = argmax_without_dequantize(quantized)

    record = {
        "calibration_images": len(feeds),
        "scheme": "static int8 (ai-edge-quantizer static_wi8_ai8, min/max)",
        "weights": "int8 per output channel",
        "activations": "int8",
        "source": source,
    }
    metadata = {**metadata, "quantization": record}
    quantized = with_mtvision_metadata(quantized, metadata, drop=(MEDIAPIPE_ENTRY,))
    quantized = add_phone_metadata(quantized, metadata, target)
    entries = tflite_metadata_entries(quantized, target)
    if json.loads(entries["mtvision"].decode()) != json.loads(json.dumps(metadata)):
        raise ExportError(f"{target}: the mtvision metadata did not survive the int8 rewrite")
    with staged_file(target) as staged:
        atomic_write_bytes(staged, quantized)
        from mtvision.export.litert_runtime import open_litert

        open_litert(staged, 1)  # LiteRT loads it: the check before it replaces target
    return record


def _nhwc_batches(image) -> list[np.ndarray]:
    array = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
    if array.dtype != np.uint8:
        raise ExportError(f"calibration images must be uint8, got {array.dtype}")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or 3 not in (array.shape[1], array.shape[3]):
        raise ExportError(f"calibration images must be (N, 3, H, W) RGB, got {array.shape}")
    if array.shape[1] == 3 and array.shape[3] != 3:
        array = array.transpose(0, 2, 3, 1)
    return [np.ascontiguousarray(array[i : i + 1]) for i in range(array.shape[0])]
