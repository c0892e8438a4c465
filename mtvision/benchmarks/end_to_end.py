"""End to end, what a user's application sees: ``tools/benchmark.py --task cls|det|seg|seg-ade|multitask``.

A uint8 RGB (H, W, 3) image at the model's input size in, final results out
(top-5; boxes after NMS; the class map), batch 1, CPU. Contenders: mtvision's
torch predict path, its deployed ONNX graph (:func:`mtvision.export.export_deploy_onnx`,
post-processing inside) in onnxruntime float and int8
(:func:`mtvision.export.quantize.quantize_onnx`), torchvision's mobile models eager
with their own pre- and post-processing, and Google's TFLite runtime on the Coral
int8 files of ``../shared/realdata`` (when there); OpenVINO on the same ONNX files
when ``openvino`` is importable; the same model as LiteRT ``.tflite`` and ExecuTorch
``.pte`` files, float and int8, when their extras are importable
(:mod:`~mtvision.benchmarks.phone_files`). ``seg-ade`` is Google's MLPerf DeepLabv3+
(ADE20K, 512) converted by mtvision (:func:`~mtvision.convert.tflite_conversion.convert_tflite`)
and exported again, against Google's int8 file. The multi-task task times the
multi-task graph against the three single-task graphs one after another. All contenders of a task
run back to back in each run, in rotating order
(:func:`~mtvision.benchmarks.timing.time_group`); ratios are medians of per-run
ratios, printed with the issue's goals. docs/benchmarks.md has what each row runs
and the measured tables.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torchvision
from torch import nn

import mtvision
from mtvision.benchmarks.contenders import (
    Contender,
    chw_batch,
    deployed_graphs,
    mtvision_torch,
    openvino_available,
)
from mtvision.benchmarks.detection_candidates import (
    SSDNetwork,
    set_candidates_,
    set_torchvision_candidates_,
)
from mtvision.benchmarks.images import benchmark_images
from mtvision.benchmarks.networks import MULTITASK_CLASSES, SINGLE_TASK_MODELS
from mtvision.benchmarks.options import BenchmarkOptions
from mtvision.benchmarks.phone_files import phone_rows
from mtvision.benchmarks.references import (
    TFLITE_FILES,
    converted_google_model,
    tflite_contender,
    torchvision_contender,
)
from mtvision.benchmarks.report import print_task_table
from mtvision.benchmarks.results import E2E_TOPK, agreement_lines, describe
from mtvision.benchmarks.timing import make_row, quartiles, time_group
from mtvision.data.normalization import INCEPTION_MEAN_RGB, INCEPTION_STD_RGB
from mtvision.export import export_deploy_onnx
from mtvision.layers.same_padding import SamePad2d
from mtvision.tasks import DETECTION, heads_of_task
from mtvision.utils.parity import randomize_batch_norms_

#: Input size per task: the classifier's 224, SSDLite's 320, DeepLab's 513 (Google's
#: file), DeepLabv3+'s 512 (Google's MLPerf file); the multi-task row at SSDLite's size.
TASK_INPUT_SIZES = {"cls": 224, "det": 320, "seg": 513, "seg-ade": 512, "multitask": 320}
TASKS = tuple(TASK_INPUT_SIZES)
#: ImageNet, COCO and PASCAL VOC classes of the single-task heads, and their models.
TASK_CLASSES = dict(cls=1000, det=80, seg=21)
TASK_MODELS = dict(cls="mobilenet_v2", det="ssdlite320_mobilenet_v2", seg="deeplabv3_mobilenet_v2")
#: The int8 goals: ratio of mtvision's int8 graph to torchvision's model at most this.
GOALS = dict(cls=0.2, det=0.33, seg=0.2)


class Task(NamedTuple):
    """The contenders of one ``--task``. ``ratios``: (numerator key, denominator key,
    goal or None), the goal meaning ratio <= goal; ``comparisons``: (expected key,
    actual key, label) of the agreement checks, one line per head
    (:func:`~mtvision.benchmarks.results.agreement_lines`); ``notes``: what was set up
    or left out, and why; ``int8_files``: (key, runtime and format) of mtvision's int8
    files, of which the table names the fastest."""

    title: str
    contenders: list[Contender]
    ratios: list[tuple[str, str, float | None]]
    comparisons: list[tuple[str, str, str]]
    notes: list[str]
    int8_files: list[tuple[str, str]] = []


def run_task(options: BenchmarkOptions) -> list[dict]:
    """Build ``options.task`` once, then time its contenders at each thread count; print
    and return one table per thread count (:func:`task_table`)."""
    with tempfile.TemporaryDirectory() as work_dir:
        task = build_task(options, Path(work_dir))
        print(task.title)
        for note in task.notes:
            print(f"  {note}")
        tables = []
        for threads in options.threads:
            torch.set_num_threads(threads)
            calls = [contender.make(threads) for contender in task.contenders]
            results = {
                contender.key: contender.result(call())
                for contender, call in zip(task.contenders, calls, strict=True)
            }
            samples = time_group(calls, options.runs, options.warmup, options.block)
            table = task_table(options.task, task, threads, results, samples)
            print_task_table(table, options.runs, options.warmup, options.block)
            tables.append(table)
    return tables


def task_table(
    name: str, task: Task, threads: int, results: dict, samples: list[list[float]]
) -> dict:
    """One thread count's contenders (median and quartile ms, output), ratios
    (:func:`~mtvision.benchmarks.timing.make_row` rows, with their goals), agreement
    checks and ``fastest_int8`` (key, runtime and format, median ms of the fastest of
    mtvision's int8 files; None without any); ``samples``: ms per run of each
    contender, in ``task.contenders``' order."""
    by_key = {c.key: ms for c, ms in zip(task.contenders, samples, strict=True)}
    contenders = [
        {
            "key": contender.key,
            "name": contender.name,
            "median_ms": statistics.median(ms),
            "iqr_ms": quartiles(ms),
            "output": describe(results[contender.key]),
        }
        for contender, ms in zip(task.contenders, samples, strict=True)
    ]
    ratios = []
    for numerator, denominator, goal in task.ratios:
        outputs = f"{describe(results[numerator])} vs {describe(results[denominator])}"
        row = make_row(
            f"{numerator} / {denominator}", by_key[numerator], by_key[denominator], outputs
        )
        if goal is not None:
            row["goal"] = goal
        ratios.append(row)
    medians = {c["key"]: c["median_ms"] for c in contenders}
    int8 = [(medians[key], key, what) for key, what in task.int8_files if key in medians]
    fastest = None
    if int8:
        ms, key, what = min(int8)
        fastest = {"key": key, "format": what, "median_ms": ms}
    return {
        "task": name,
        "threads": threads,
        "contenders": contenders,
        "ratios": ratios,
        "agreement": agreement_lines(results, task.comparisons),
        "fastest_int8": fastest,
        "notes": task.notes,
    }


def deploy_files(
    model: nn.Module, name: str, size: int, images: list[np.ndarray], work_dir: Path
) -> dict[str, Path]:
    """The deployed graph (uint8 in, post-processing inside) and its int8 version,
    calibrated on ``images`` (HWC uint8); fixed at ``size`` x ``size`` when a head's task
    needs a fixed input size (:attr:`~mtvision.tasks.Task.fixed_input_size`) or the model
    pads TF-"same" (a converted Google model: the amounts follow the input size), else any."""
    from mtvision.export.quantize import quantize_onnx

    fixed = any(task.fixed_input_size for task in model.head_tasks.values()) or any(
        isinstance(module, SamePad2d) for module in model.modules()
    )
    float_path = work_dir / f"{name}.onnx"
    export_deploy_onnx(model, float_path, input_size=(size, size) if fixed else None, topk=E2E_TOPK)
    int8_path = work_dir / f"{name}.int8.onnx"
    quantize_onnx(float_path, int8_path, [chw_batch(image) for image in images])
    return {"float": float_path, "int8": int8_path}


def single_task_model(name: str, classes: int, **kwargs) -> nn.Module:
    """mtvision's single-task model ``name`` with ``classes`` classes, BatchNorm statistics
    randomised so that its activations are of order 1."""
    model = mtvision.create_model(name, num_classes=classes, **kwargs)
    return randomize_batch_norms_(model, seed=5)


def single_task_models(
    task: str, size: int, image: np.ndarray, det_candidates: int, notes: list[str]
) -> tuple[nn.Module, nn.Module | None]:
    """mtvision's model of ``task`` (``cls``, ``det``, ``seg``, ``seg-ade``) and its
    torchvision reference (None for ``seg-ade``: torchvision has no DeepLabv3+); what
    was set up goes to ``notes``."""
    if task == "cls":
        reference = torchvision.models.mobilenet_v2(weights=None, num_classes=TASK_CLASSES[task])
        reference = randomize_batch_norms_(reference, seed=0).eval()
        model = mtvision.create_model(TASK_MODELS[task], num_classes=TASK_CLASSES[task]).eval()
        model.load_torchvision_state_dict(reference.state_dict())
        notes.append(
            "mtvision's classifier holds torchvision's weights (BatchNorm statistics randomised)"
        )
        return model, reference
    if task == "det":
        model = single_task_model(TASK_MODELS[task], TASK_CLASSES[task])
        (detection,) = heads_of_task(model.head_tasks, DETECTION)
        reference = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None,
            weights_backbone=None,
            detections_per_img=model.heads[detection].test_cfg["max_detections"],
        )
        # Order-1 activations, as for mtvision's model: a fresh init scores every pair alike.
        randomize_batch_norms_(SSDNetwork(reference), seed=7, input_size=size)
        reference.eval()
        notes.append("mtvision SSDLite: " + set_candidates_(model, image, det_candidates))
        notes.append(
            "torchvision SSDLite: " + set_torchvision_candidates_(reference, image, det_candidates)
        )
        return model, reference
    if task == "seg-ade":
        model, note = converted_google_model(task)
        notes.append(note)
        return model, None
    # The on-device DeepLabv3 as Google's file computes it (docs/pretrained.md): its
    # upsampling rule and [-1, 1] inputs; at 513 (odd) PyTorch's padding is TF's SAME.
    model = single_task_model(
        TASK_MODELS[task],
        TASK_CLASSES[task],
        align_corners=True,
        data_preprocessor=dict(
            type="DataPreprocessor", mean=INCEPTION_MEAN_RGB, std=INCEPTION_STD_RGB
        ),
    )
    reference = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=TASK_CLASSES[task], aux_loss=False
    ).eval()
    return model, reference


def build_task(options: BenchmarkOptions, work_dir: Path) -> Task:
    """Models, deployed files (in ``work_dir``) and contenders of ``options.task`` at
    ``options.size``."""
    size = options.size
    torch.manual_seed(0)  # the models' random initialisation, hence thresholds and outputs
    images, source = benchmark_images(options.calib, size)
    image = images[0]
    notes = [f"image and calibration: {source}"]
    if options.task == "multitask":
        return build_multitask(options, images, work_dir, notes)
    task = options.task
    model, reference = single_task_models(task, size, image, options.det_candidates, notes)
    (head,) = model.active_head_names  # the references' results go under its name
    files = deploy_files(model, task, size, images, work_dir)
    contenders = [
        mtvision_torch(model, image),
        deployed_graphs(
            "mtvision ort float",
            "mtvision onnxruntime float (deployed graph)",
            [files["float"]],
            image,
        ),
        deployed_graphs(
            "mtvision ort int8",
            "mtvision onnxruntime int8 (deployed graph, quantised)",
            [files["int8"]],
            image,
        ),
    ]
    if reference is not None:
        contenders.append(torchvision_contender(task, reference, image, head))
    ratios: list[tuple[str, str, float | None]] = []
    comparisons = [
        ("mtvision torch", "mtvision ort float", "torch vs ort float"),
        ("mtvision ort int8", "mtvision ort float", "ort int8 vs float"),
    ]
    tflite = None
    if task in TFLITE_FILES:
        tflite, note = tflite_contender(task, image, head)
        notes.append(note)
        if tflite is not None:
            contenders.append(tflite)
    with_openvino, note = openvino_available()
    notes.append(note)
    int8_files = [("mtvision ort int8", "onnxruntime .onnx")]
    if with_openvino:
        for precision in ("float", "int8"):
            contenders.append(
                deployed_graphs(
                    f"mtvision openvino {precision}",
                    f"mtvision OpenVINO {precision} (the same deployed file)",
                    [files[precision]],
                    image,
                    runtime="openvino",
                )
            )
            comparisons.append(
                (
                    f"mtvision openvino {precision}",
                    f"mtvision ort {precision}",
                    f"openvino {precision} vs ort {precision}",
                )
            )
        int8_files.append(("mtvision openvino int8", "OpenVINO .onnx"))
    phone = phone_rows(model, task, size, images, work_dir, options.phone_formats)
    contenders += phone.contenders
    comparisons += phone.comparisons
    notes += phone.notes
    int8_files += phone.int8_files
    if task == "cls":
        comparisons.append(("mtvision torch", "torchvision", "torch vs torchvision (same weights)"))
    if task == "seg-ade" and tflite is not None:
        # The same weights as Google's file: how closely each of mtvision's files follows it.
        comparisons.append(("mtvision torch", "TFLite int8", "torch vs Google's int8 file"))
        comparisons += [
            (key, "TFLite int8", f"{key.removeprefix('mtvision ')} vs Google's int8 file")
            for key, _ in int8_files
        ]
    for key, _ in int8_files:
        # The issues' goals: mtvision's int8 ONNX (and OpenVINO) and .tflite no slower than
        # Google's int8 file of the same network; ExecuTorch's reported beside them.
        if tflite is not None:
            goal = None if "executorch" in key else 1.0
            ratios.append((key, "TFLite int8", goal))
        if reference is not None and key in ("mtvision ort int8", "mtvision openvino int8"):
            ratios.append((key, "torchvision", GOALS[task]))
    if reference is not None:
        ratios += [
            ("mtvision ort float", "torchvision", None),
            ("mtvision torch", "torchvision", None),
        ]
    ratios.append(("mtvision ort int8", "mtvision ort float", None))
    if with_openvino:
        ratios.append(("mtvision openvino int8", "mtvision ort int8", None))
    for key, _ in phone.int8_files:
        ratios.append((key, "mtvision ort int8", None))
    what = {
        "cls": "top-5",
        "det": "boxes after NMS",
        "seg": "class map",
        "seg-ade": "class map (Google's MLPerf DeepLabv3+ ADE20K, converted)",
    }[task]
    title = f"{task}: uint8 RGB {size}x{size} in, {what} out"
    return Task(title, contenders, ratios, comparisons, notes, int8_files)


def build_multitask(
    options: BenchmarkOptions, images: list[np.ndarray], work_dir: Path, notes: list[str]
) -> Task:
    """The multi-task deployed graph against the three single-task deployed graphs run
    one after another on the same image, in float and in int8; the multi-task model's
    phone files beside them (:func:`~mtvision.benchmarks.phone_files.phone_rows`)."""
    size, image = options.size, images[0]
    stride = (
        {}
        if options.multitask_output_stride is None
        else {"output_stride": options.multitask_output_stride}
    )
    model = mtvision.create_model("mobilenet_v2_multitask", num_classes=MULTITASK_CLASSES, **stride)
    model = randomize_batch_norms_(model, seed=6)
    notes.append("multi-task SSDLite: " + set_candidates_(model, image, options.det_candidates))
    files = deploy_files(model, "multitask", size, images, work_dir)
    singles = []
    for head, classes in MULTITASK_CLASSES.items():
        single = single_task_model(SINGLE_TASK_MODELS[head], classes)
        candidates = set_candidates_(single, image, options.det_candidates)
        if candidates:
            notes.append("single-task SSDLite: " + candidates)
        singles.append(deploy_files(single, f"single_{head}", size, images, work_dir))
    with_openvino, note = openvino_available()
    notes.append(note)
    runtimes = dict(ort="onnxruntime", **({"openvino": "openvino"} if with_openvino else {}))
    contenders, ratios = [], []
    for short, runtime in runtimes.items():
        for precision in ("float", "int8"):
            contenders += [
                deployed_graphs(
                    f"multi-task {short} {precision}",
                    f"mtvision multi-task graph (OS {model.backbone.output_stride}), "
                    f"{runtime} {precision}",
                    [files[precision]],
                    image,
                    runtime,
                ),
                deployed_graphs(
                    f"3 single-task {short} {precision}",
                    f"classifier + SSDLite + DeepLabv3 graphs one after another, "
                    f"{runtime} {precision}",
                    [single[precision] for single in singles],
                    image,
                    runtime,
                ),
            ]
            ratios.append(
                (f"multi-task {short} {precision}", f"3 single-task {short} {precision}", 0.5)
            )
    int8_files = [
        (f"multi-task {short} int8", f"{runtime} .onnx") for short, runtime in runtimes.items()
    ]
    phone = phone_rows(
        model,
        "multitask",
        size,
        images,
        work_dir,
        options.phone_formats,
        prefix="multi-task",
        label="multi-task {head} ",
    )
    contenders += phone.contenders
    notes += phone.notes
    int8_files += phone.int8_files
    ratios += [(key, "multi-task ort int8", None) for key, _ in phone.int8_files]
    title = f"multitask: uint8 RGB {size}x{size} in, top-5 + boxes + class map out"
    comparisons = [
        ("multi-task ort int8", "multi-task ort float", "multi-task {head} ort int8 vs float"),
        *phone.comparisons,
    ]
    return Task(title, contenders, ratios, comparisons, notes, int8_files)
