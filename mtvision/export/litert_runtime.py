"""The ``litert`` runtime: a ``.tflite`` file in LiteRT's interpreter (``ai_edge_litert``).

:func:`open_litert` is the opener registered in :mod:`mtvision.export.runtimes`:
``(path, threads) -> (run, output names)``. ``run`` takes uint8 (N, H, W, 3) images;
a file whose batch is fixed to 1 (every file of
:func:`~mtvision.export.litert_export.export_deploy_tflite`) runs them one at a time.
A quantized input (int8 / uint8 with a scale) gets the pixel values quantized as the
file says; quantized outputs are dequantized to float, except integer outputs without
a scale (the class map). Optional extra: ``pip install -e '.[litert]'``.
"""

from __future__ import annotations

import numpy as np

from mtvision.errors import ExportError
from mtvision.export.litert_metadata import INSTALL_HINT


def open_litert(path: str, threads: int | None):
    """Load ``path`` in LiteRT's interpreter (``num_threads=threads``; None: LiteRT's
    default). Returns ``(run, output names)``, ``run(images) -> list of arrays``.

    Raises:
        ExportError: ai-edge-litert is not installed (the install hint), or the file
            cannot be loaded (LiteRT's message); names the file.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ExportError(f"{path}: the litert runtime is not installed ({INSTALL_HINT})") from None
    try:
        interpreter = Interpreter(
            model_path=path, num_threads=None if threads is None else int(threads)
        )
        interpreter.allocate_tensors()
    except Exception as error:  # LiteRT raises ValueError/RuntimeError with its own text
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{path}: LiteRT cannot load it ({first})") from None
    (input_detail,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    names = [detail["name"] for detail in outputs]
    fixed_batch = int(input_detail["shape_signature"][0]) if len(input_detail["shape"]) else -1
    input_index = input_detail["index"]
    input_dtype = np.dtype(input_detail["dtype"])
    in_scale, in_zero = input_detail["quantization"]

    def quantize(images: np.ndarray) -> np.ndarray:
        if in_scale:  # pixel values in the file's quantized input
            info = np.iinfo(input_dtype)
            values = np.round(images.astype(np.float32) / in_scale + in_zero)
            return np.clip(values, info.min, info.max).astype(input_dtype)
        return images.astype(input_dtype, copy=False)

    def dequantize(array: np.ndarray, detail: dict) -> np.ndarray:
        scale, zero = detail["quantization"]
        if scale:
            return (array.astype(np.float32) - zero) * scale
        return array

    def run_one(images: np.ndarray) -> list[np.ndarray]:
        if tuple(interpreter.get_input_details()[0]["shape"]) != images.shape:
            interpreter.resize_tensor_input(input_index, list(images.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, quantize(images))
        interpreter.invoke()
        # Copies: the interpreter reuses its output buffers on the next invoke.
        return [dequantize(interpreter.get_tensor(d["index"]).copy(), d) for d in outputs]

    def run(images: np.ndarray) -> list[np.ndarray]:
        if fixed_batch == 1 and images.shape[0] != 1:
            parts = [run_one(images[i : i + 1]) for i in range(images.shape[0])]
            return [np.concatenate(arrays) for arrays in zip(*parts, strict=True)]
        return run_one(images)

    return run, names
