"""The end-to-end references: torchvision's mobile models eager and Google's TFLite runtime
on the Coral int8 files and the MLPerf DeepLabv3+ file, each a uint8 RGB (H, W, 3) image
in and final results out; :func:`converted_google_model`: a Google file converted into
mtvision's model, for the tasks whose mtvision model is Google's network.

Their outputs are converted here into the task adapters' deployed format for one image
(:mod:`~mtvision.benchmarks.results`), under the name of the mtvision head they are
compared with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2.functional import normalize as tv_normalize
from torchvision.transforms.v2.functional import to_dtype

from mtvision.benchmarks.contenders import Contender
from mtvision.benchmarks.images import REALDATA_ENV, TFLITE_FOLDER, realdata_folder
from mtvision.benchmarks.results import E2E_TOPK, HeadOutputs
from mtvision.errors import ConfigError
from mtvision.tasks import CLASSIFICATION, DETECTION, SEGMENTATION

#: Google's int8 files per task, in the real-data folder (its README): the Coral
#: classifier and VOC DeepLabv3, and MLPerf Mobile's ADE20K DeepLabv3+ (512, 32 classes).
TFLITE_FILES = {
    "cls": f"{TFLITE_FOLDER}/models/tf2_mobilenet_v2_1.0_224_ptq.tflite",
    "seg": f"{TFLITE_FOLDER}/models/deeplabv3_mnv2_pascal_quant.tflite",
    "seg-ade": "mlperf_deeplabv3plus_ade20k/deeplabv3_mnv2_ade20k_int8.tflite",
}
#: torchvision's reference preprocessing (its ``ImageClassification`` /
#: ``SemanticSegmentation`` presets: to float in [0, 1], then these).
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)


def torchvision_input(image: np.ndarray, normalize: bool) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1], normalised as torchvision's presets
    when ``normalize``."""
    x = to_dtype(torch.from_numpy(image).permute(2, 0, 1), torch.float32, scale=True)
    return tv_normalize(x, TORCHVISION_MEAN, TORCHVISION_STD) if normalize else x


def torchvision_contender(task: str, model: nn.Module, image: np.ndarray, head: str) -> Contender:
    """torchvision's model eager, its preprocessing and post-processing included: the
    classifier's normalisation, softmax and top-5; SSDLite's own transform (resize,
    normalisation) and per-class NMS; DeepLab's normalisation and argmax of ``out``.
    ``task``: ``cls``, ``det`` or ``seg``; its result is under ``head``'s name."""

    def make(threads: int) -> Callable[[], object]:
        def run():
            with torch.inference_mode():
                if task == "cls":
                    x = torchvision_input(image, normalize=True)[None]
                    return model(x).softmax(dim=1).topk(E2E_TOPK, dim=1)
                if task == "det":
                    return model([torchvision_input(image, normalize=False)])[0]
                x = torchvision_input(image, normalize=True)[None]
                return model(x)["out"].argmax(dim=1)

        return run

    def result(output) -> dict[str, HeadOutputs]:
        if task == "cls":
            values, indices = output
            return {head: HeadOutputs(CLASSIFICATION, {"scores": values, "labels": indices})}
        if task == "det":  # boxes / scores / labels: a prediction's fields
            return {head: HeadOutputs(DETECTION, DETECTION.to_deployed(output))}
        return {head: HeadOutputs(SEGMENTATION, {"mask": output})}

    name = {
        "cls": "torchvision eager (mobilenet_v2)",
        "det": "torchvision eager (ssdlite320_mobilenet_v3_large, transform + NMS)",
        "seg": "torchvision eager (deeplabv3_mobilenet_v3_large)",
    }[task]
    return Contender("torchvision", name, make, result)


def converted_google_model(task: str) -> tuple[nn.Module, str]:
    """Google's int8 file of ``task`` converted into mtvision's model
    (:func:`~mtvision.convert.tflite_conversion.convert_tflite`: the network the graph
    describes, its weights dequantised, eval mode) and a note naming the file.

    Raises:
        ConfigError: the file is not in the real-data folder (names the path and
            ``$MTVISION_REALDATA``).
    """
    from mtvision.convert.tflite_conversion import convert_tflite

    folder = realdata_folder()
    path = (folder or Path("../shared/realdata")) / TFLITE_FILES[task]
    if folder is None or not path.is_file():
        raise ConfigError(
            f"--task {task} runs Google's {path.name} converted by mtvision: {path} is not "
            f"there (set {REALDATA_ENV} to the real-data folder)"
        )
    model, meta = convert_tflite(path)
    kwargs = meta["model"]["kwargs"]
    return model.eval(), (
        f"mtvision's model: {path.name} converted by mtvision ({meta['model']['name']}, "
        f"{kwargs['num_classes']} classes, output stride {meta['converted_from']['output_stride']})"
    )


def tflite_contender(task: str, image: np.ndarray, head: str) -> tuple[Contender | None, str]:
    """Google's TFLite runtime on its int8 file of ``task`` (:data:`TFLITE_FILES`), its
    result under ``head``'s name; or ``None`` and why not."""
    folder = realdata_folder()
    if folder is None:
        return None, f"TFLite row left out: ../shared/realdata not present (set {REALDATA_ENV})"
    path = folder / TFLITE_FILES[task]
    if not path.is_file():
        return None, f"TFLite row left out: {path} not present"
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return (
            None,
            "TFLite row left out: ai-edge-litert is not installed (pip install -e '.[tflite]')",
        )
    probe = Interpreter(model_path=str(path))
    input_shape = tuple(int(v) for v in probe.get_input_details()[0]["shape"])
    if input_shape[1:3] != image.shape[:2]:
        return None, (
            f"TFLite row left out: {path.name} takes {input_shape[1]}x{input_shape[2]}, "
            f"the benchmark runs {image.shape[0]}x{image.shape[1]}"
        )

    def make(threads: int) -> Callable[[], object]:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]
        batch = image[None]

        def run():
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            output = interpreter.get_tensor(output_index)
            if task == "cls":  # quantised softmax over 1001 classes (0: background): top-5
                scores = output[0]
                top = np.argpartition(scores, -E2E_TOPK)[-E2E_TOPK:]
                return top[np.argsort(-scores[top], kind="stable")], scores
            return output

        return run

    def result(output) -> dict[str, HeadOutputs]:
        if task == "cls":
            top, scores = output
            outputs = {
                "scores": torch.from_numpy(scores[top].astype(np.float32) / 255)[None],
                "labels": torch.from_numpy(top - 1)[None],
            }
            return {head: HeadOutputs(CLASSIFICATION, outputs)}
        return {head: HeadOutputs(SEGMENTATION, {"mask": torch.from_numpy(output)})}

    name = f"TFLite runtime int8 ({path.name}, XNNPACK)"
    return Contender("TFLite int8", name, make, result), f"TFLite file: {path}"
