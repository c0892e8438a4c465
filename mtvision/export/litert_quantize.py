"""Static int8 quantisation of a deployed float ``.tflite`` with ``ai-edge-quantizer``.

:func:`quantize_tflite` calibrates the activation ranges (min/max) on uint8 NHWC images
from the config's test pipeline and quantises every op LiteRT has an int8 kernel for
(``ai_edge_quantizer.recipe.static_wi8_ai8``: int8 weights per output channel, int8
activations, asymmetric as LiteRT's int8 kernels want); the uint8 image input stays as
it was and the outputs stay float (the quantiser puts the (de)quantize ops at the
edges; their tensors get the float file's output names back, so the runtime and the
metadata need no change); a class map's ARG_MAX reads the int8 logits
(:func:`~mtvision.export.litert_rewrite.argmax_without_dequantize`, as in Google's int8
DeepLab files). The trial behind issue 18
measured this path at Google's own int8 accuracy and speed, where litert-torch's PT2E
int8 broke the classifier.

The last layers stay float by default (``float_last_layers``, as the ONNX path's
:class:`~mtvision.export.quantize.QuantizationSettings`): the classifier's
``FULLY_CONNECTED`` (the logits) and every ``SOFTMAX``. Min/max ranges calibrated on
photos the network is less sure about than on the ones it is used on clip the largest
logits, so the top classes tie in int8 and the argmax takes the first one: Google's
classifier calibrated on 106 held-out real photos lost 2 of 14 top-1 labels to such
ties (int8 logits and softmax; int16 ones clip alike), and 0 with the float
fully-connected layer, at +0.1 ms of 3.6 ms (1 thread; ``tests/test_litert_realdata.py``).

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
#: The ops kept float with ``float_last_layers`` (ai-edge-quantizer's op names).
FLOAT_LAST_OPS = ("FULLY_CONNECTED", "SOFTMAX")
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
    float_last_layers: bool = True,
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
        float_last_layers: keep ``FULLY_CONNECTED`` and ``SOFTMAX`` ops float (the
            module docstring says why); False: every op LiteRT has an int8 kernel for
            is int8.

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
        from ai_edge_quantizer import quantizer
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
    engine = quantizer.Quantizer(content, _recipe(float_last_layers))
    ranges = engine.calibrate({SIGNATURE: feeds}, num_threads=1)
    quantized = bytes(engine.quantize(ranges, enable_progress_report=False).quantized_model)
    # The quantiser has no int8 ARG_MAX: the class map's argmax reads the int8 logits.
    quantized = argmax_without_dequantize(quantized)

    record = {
        "calibration_images": len(feeds),
        "scheme": "static int8 (ai-edge-quantizer static_wi8_ai8, min/max)",
        "weights": "int8 per output channel",
        "activations": "int8",
        "float_layers": list(FLOAT_LAST_OPS) if float_last_layers else [],
        "source": source,
    }
    metadata = {**metadata, "quantization": record}
    # The quantiser names the float outputs it adds "<name>_dequant"; the runtime finds
    # outputs by the metadata's names, so they get them back (in the signature's order).
    output_names = [n for info in metadata["heads"].values() for n in info["outputs"].values()]
    quantized = with_mtvision_metadata(
        quantized, metadata, input_name, output_names, drop=(MEDIAPIPE_ENTRY,)
    )
    quantized = add_phone_metadata(quantized, metadata, target)
    entries = tflite_metadata_entries(quantized, target)
    if json.loads(entries["mtvision"].decode()) != json.loads(json.dumps(metadata)):
        raise ExportError(f"{target}: the mtvision metadata did not survive the int8 rewrite")
    with staged_file(target) as staged:
        atomic_write_bytes(staged, quantized)
        from mtvision.export.litert_runtime import open_litert

        open_litert(staged, 1)  # LiteRT loads it: the check before it replaces target
    return record


def _recipe(float_last_layers: bool):
    """ai-edge-quantizer's static int8 recipe; the graph outputs float, and with
    ``float_last_layers`` the :data:`FLOAT_LAST_OPS` float."""
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    operations = qtyping.TFLOperationName
    manager.add_static_config(".*", operations.ALL_SUPPORTED, 8, 8)
    keep = ("OUTPUT", *FLOAT_LAST_OPS) if float_last_layers else ("OUTPUT",)
    for name in keep:
        manager.add_quantization_config(
            ".*", operations[name], algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE
        )
    return manager.get_quantization_recipe()


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
