"""The runtimes that run a deployed file, by name: what they read and how they are opened.

- ``onnxruntime`` (the default for ``.onnx``) and ``openvino`` read the same ONNX file
  (NonMaxSuppression, TopK and the int8 QDQ graph of ``tools/quantize.py`` included)
  and return the same outputs; which is faster depends on the model and the CPU
  (``docs/benchmarks.md``). OpenVINO is the optional extra ``pip install -e '.[openvino]'``.
- The phone runtimes register here too (:data:`RUNTIMES`): each entry names the file
  suffixes it reads and the function that opens a file (``"module:function"``, imported
  on first use, so an optional runtime is imported only when asked for).

Every runtime's session has the same face: ``run(images) -> {output name: array}``
and ``output_names``; images come in the layout the file's metadata names.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from mtvision.errors import ExportError

#: runtime name -> (file suffixes it reads, opener ``(path, threads) -> (run, output names)``,
#: where ``run(images) -> list of arrays``).
RUNTIMES: dict[str, tuple[tuple[str, ...], object]] = {}

#: The runtimes whose sessions return finished results (the ONNX graph's fields of the
#: file's one head, e.g. MediaPipe Tasks), which ``DeployedModel`` takes as they are.
FINISHED_RUNTIMES: set[str] = set()


def register_runtime(name: str, suffixes: tuple[str, ...], opener, finished: bool = False) -> None:
    """Make a runtime known by ``name``; ``opener``: a function or ``"module:function"``;
    ``finished``: its session returns the ONNX graph's fields, not the file's tensors."""
    RUNTIMES[name] = (tuple(suffixes), opener)
    if finished:
        FINISHED_RUNTIMES.add(name)
    else:
        FINISHED_RUNTIMES.discard(name)


def runtime_names() -> tuple[str, ...]:
    """The known runtimes, in registration order."""
    return tuple(RUNTIMES)


def deployed_suffixes() -> tuple[str, ...]:
    """The file suffixes some registered runtime reads (``.onnx``, ...)."""
    return tuple(dict.fromkeys(s for suffixes, _ in RUNTIMES.values() for s in suffixes))


def default_runtime(path: str | os.PathLike) -> str | None:
    """The first runtime registered for ``path``'s format (None: no runtime reads it)."""
    from mtvision.export.deploy import deployed_format

    suffix = deployed_format(path)
    for name, (suffixes, _) in RUNTIMES.items():
        if suffix in suffixes:
            return name
    return None


class DeployedSession:
    """One loaded ONNX file: ``run(images) -> {output name: array}``.

    Args:
        path: the ONNX file.
        runtime: a name of :data:`RUNTIMES`: ``"onnxruntime"`` (CPUExecutionProvider),
            ``"openvino"`` (CPU plugin: one stream, latency hint, float32 where the graph
            is float, as onnxruntime), or a phone runtime.
        threads: intra-op threads (default: the runtime's choice).

    Raises:
        ExportError: an unknown runtime, a file of another format, a runtime that is not
            installed (with the install hint), or a file the runtime cannot load; the
            message names the file.
    """

    def __init__(self, path: str | os.PathLike, runtime: str = "onnxruntime", threads=None):
        self.path = os.fspath(path)
        self.runtime = runtime
        if runtime not in RUNTIMES:
            raise ExportError(f"unknown runtime {runtime!r}; use one of {runtime_names()}")
        suffixes, opener = RUNTIMES[runtime]
        from mtvision.export.deploy import deployed_format

        suffix = deployed_format(self.path)
        if suffix not in suffixes:
            raise ExportError(
                f"{self.path}: the {runtime} runtime reads {'/'.join(suffixes)} files, "
                f"not {suffix or 'files without a suffix'}"
            )
        if isinstance(opener, str):
            module, _, function = opener.partition(":")
            opener = getattr(importlib.import_module(module), function)
        self._run, self.output_names = opener(self.path, threads)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for the graph's one input (uint8 images in the file's layout)."""
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


register_runtime("onnxruntime", (".onnx",), _onnxruntime)
register_runtime("openvino", (".onnx",), _openvino)
register_runtime("litert", (".tflite",), "mtvision.export.litert_runtime:open_litert")
register_runtime(
    "mediapipe", (".tflite",), "mtvision.export.mediapipe_runtime:open_mediapipe", finished=True
)
register_runtime("executorch", (".pte",), "mtvision.export.executorch_runtime:open_executorch")
