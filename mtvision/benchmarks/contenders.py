"""mtvision's end-to-end contenders: its torch predict path and its deployed graphs in
onnxruntime or OpenVINO, each a uint8 RGB (H, W, 3) image in and final results out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mtvision.benchmarks.results import HeadOutputs, graph_outputs, predicted_outputs
from mtvision.export.deploy import read_deploy_metadata
from mtvision.export.runtimes import DeployedSession


class Contender(NamedTuple):
    """One way to get final results from a uint8 RGB (H, W, 3) image.

    ``make(threads)`` builds the timed call (onnxruntime sessions and TFLite
    interpreters are made per thread count; torch's threads are set by the
    caller); ``result(output)`` turns what the call returned into ``{head name:
    HeadOutputs}`` (:mod:`~mtvision.benchmarks.results`: each head's outputs for the
    image in its task adapter's deployed format), outside the timing. ``key``: the
    short name ratios use.
    """

    key: str
    name: str
    make: Callable[[int], Callable[[], object]]
    result: Callable[[object], dict[str, HeadOutputs]]


def chw_batch(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (1, 3, H, W) uint8, the deployed graphs' input."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))[None]


def mtvision_torch(model: nn.Module, image: np.ndarray) -> Contender:
    """The model's full predict path: data preprocessor (cast, normalisation), network,
    the heads' post-processing (``test_step``), and each head's prediction as its
    deployed outputs (:meth:`~mtvision.tasks.Task.to_deployed`: the classifier's top-5)."""

    def make(threads: int) -> Callable[[], object]:
        def run():
            data = {"inputs": [torch.from_numpy(image).permute(2, 0, 1)], "data_samples": [{}]}
            with torch.inference_mode():
                (prediction,) = model.test_step(data)
                return predicted_outputs(model, prediction)

        return run

    return Contender(
        "mtvision torch", "mtvision torch eager (predict path)", make, lambda output: output
    )


def _deployed_call(runtime: str, path: Path, threads: int, batch: np.ndarray) -> Callable[[], dict]:
    """One call of the deployed file in ``runtime`` (the project's
    :class:`~mtvision.export.runtimes.DeployedSession`: OpenVINO with one stream,
    latency hint, float32 where the graph is float, as onnxruntime)."""
    session = DeployedSession(path, runtime, threads)
    return lambda: session.run(batch)


def openvino_available() -> tuple[bool, str]:
    """Whether the optional OpenVINO rows can run (``pip install openvino``), and a note."""
    try:
        import openvino
    except ImportError:
        return False, "OpenVINO rows left out: openvino is not installed (optional)"
    return True, f"OpenVINO {openvino.__version__} (CPU plugin) on the same ONNX files"


def deployed_graphs(
    key: str,
    name: str,
    paths: list[Path],
    image: np.ndarray,
    runtime: str = "onnxruntime",
) -> Contender:
    """Deployed graphs run one after another on the image, one session each, in
    ``runtime`` (``"onnxruntime"`` or ``"openvino"``). The result holds every head of
    every graph, as each file's metadata names the head, its task and its outputs."""
    batch = chw_batch(image)
    metadata = [read_deploy_metadata(path) for path in paths]

    def make(threads: int) -> Callable[[], object]:
        calls = [_deployed_call(runtime, path, threads, batch) for path in paths]
        return lambda: [call() for call in calls]

    def result(outputs: list[dict]) -> dict[str, HeadOutputs]:
        results = {}
        for meta, outputs_by_name in zip(metadata, outputs, strict=True):
            results.update(graph_outputs(meta, outputs_by_name))
        return results

    return Contender(key, name, make, result)
