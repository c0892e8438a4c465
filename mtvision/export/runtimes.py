"""The CPU runtimes that run a deployed ONNX file: onnxruntime (the default) and OpenVINO.

Both read the same file (NonMaxSuppression, TopK and the int8 QDQ graph of
``tools/quantize.py`` included) and return the same outputs; which is faster
depends on the model and the CPU (``docs/benchmarks.md``: OpenVINO runs the
int8 classifier faster on AVX-512 VNNI machines, onnxruntime is level
elsewhere). OpenVINO is the optional extra ``pip install -e '.[openvino]'``.
"""

from __future__ import annotations

import os

import numpy as np

from mtvision.errors import ExportError

RUNTIMES = ("onnxruntime", "openvino")


class DeployedSession:
    """One loaded ONNX file: ``run(images) -> {output name: array}``.

    Args:
        path: the ONNX file.
        runtime: ``"onnxruntime"`` (CPUExecutionProvider) or ``"openvino"`` (CPU plugin:
            one stream, latency hint, float32 where the graph is float, as onnxruntime).
        threads: intra-op threads (default: the runtime's choice).

    Raises:
        ExportError: an unknown runtime, OpenVINO not installed, or a file the runtime
            cannot load; the message names the file.
    """

    def __init__(self, path: str | os.PathLike, runtime: str = "onnxruntime", threads=None):
        self.path = os.fspath(path)
        self.runtime = runtime
        if runtime == "onnxruntime":
            self._run, self.output_names = _onnxruntime(self.path, threads)
        elif runtime == "openvino":
            self._run, self.output_names = _openvino(self.path, threads)
        else:
            raise ExportError(f"unknown runtime {runtime!r}; use one of {RUNTIMES}")

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for the graph's one input (uint8 (N, 3, H, W) images)."""
        return dict(zip(self.output_names, self._run(np.ascontiguousarray(images)), strict=True))


def _onnxruntime(path: str, threads):
    from mtvision.export.onnx_export import onnx_session

    try:
        session = onnx_session(path, threads)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ExportError(f"{path}: onnxruntime cannot load it ({error})") from None
    input_name = session.get_inputs()[0].name
    names = [output.name for output in session.get_outputs()]
    return (lambda images: session.run(None, {input_name: images})), names


def _openvino(path: str, threads):
    try:
        import openvino
    except ImportError:
        raise ExportError(
            f"{path}: the openvino runtime is not installed (pip install -e '.[openvino]')"
        ) from None
    config = {"NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = openvino.Core().compile_model(path, "CPU", config)
    except Exception as error:  # OpenVINO raises RuntimeError with its own text
        raise ExportError(f"{path}: OpenVINO cannot load it ({error})") from None
    request = compiled.create_infer_request()
    names = [output.get_any_name() for output in compiled.outputs]

    def run(images: np.ndarray) -> list[np.ndarray]:
        request.infer({0: images})
        # Copies: the request reuses its output buffers on the next call.
        return [request.get_output_tensor(i).data.copy() for i in range(len(names))]

    return run, names
