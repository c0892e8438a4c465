"""Speed of mtvision against the references it replaces, as ratios, in one process and one run.

    python tools/benchmark.py --task cls|det|seg|multitask [--threads 1 2] [--size S]
        [--runs 50] [--warmup 10] [--calib 16] [--det-candidates 300]
    python tools/benchmark.py [--runs 50] [--warmup 10] [--threads 1] [--size 224]
        [--multitask-size 320] [--multitask-output-stride 16|32] [--topk-images 5000] [--device cpu|cuda] [--batch 1] [--train]

``--task``: end to end, what a user's application sees. A uint8 RGB (H, W, 3)
image at the model's input size in, final results out (top-5; boxes after NMS;
the class map), batch 1, CPU. Contenders: mtvision's torch predict path, its
deployed ONNX graph (:func:`mtvision.export.export_deploy_onnx`, post-processing
inside) in onnxruntime float and int8 (:func:`mtvision.export.quantize.quantize_onnx`),
torchvision's mobile models eager with their own pre- and post-processing, and
Google's TFLite runtime on the Coral int8 files of ``../shared/realdata`` (when
there); OpenVINO on the same ONNX files when ``openvino`` is importable. The
multi-task task times the multi-task graph against the three single-task graphs
one after another. All contenders of a task run back to back in each run, in
rotating order; ratios are medians of per-run ratios, printed with the issue's
goals. docs/benchmarks.md has what each row runs and the measured tables.

Without ``--task``, network comparisons, by default on CPU, batch 1, eval mode,
``torch.inference_mode``:

1. mtvision's MobileNetV2 1.0 classifier (``create_model("mobilenet_v2")``)
   against torchvision's ``mobilenet_v2(weights=None)``, with the torchvision
   model's weights (BatchNorm statistics randomised so that logits are of
   order 1) copied into ours and the logits checked to agree, in contiguous
   and channels-last memory format;
2. onnxruntime (CPUExecutionProvider) on mtvision's model exported to ONNX
   against the same model in torch eager mode (contiguous);
3. one forward of the multi-task model (``create_model("mobilenet_v2_multitask")``:
   one MobileNetV2 1.0 pass feeding a 1000-class classifier, an 80-class SSDLite
   and a 21-class DeepLabv3) against the three single-task models
   (``mobilenet_v2``, ``ssdlite320_mobilenet_v2``, ``deeplabv3_mobilenet_v2``,
   same widths and class counts) run one after another on the same
   ``--multitask-size`` image (320x320), channels-last, raw head outputs
   (``mode="tensor"``, no post-processing); the output shapes are printed;
4. ``TopKAccuracy`` (process + compute_metrics) against ``torch.topk`` on the
   same scores (the accuracies are checked to agree).

With ``--device cuda`` the two networks run on the GPU (each timed run ends
with ``torch.cuda.synchronize``) and the onnxruntime comparison is left out
(the project installs onnxruntime's CPU build). ``--batch N`` times batches of
N images; ``--train`` adds a training step (forward, cross-entropy, backward,
SGD with momentum; dropout off in both so that their first losses can be
compared) of ours against torchvision's. After the table, images per second
of each side of every network comparison.

Absolute times on a shared machine are noise; ratios of runs interleaved in
the same process much less so. Each run times the two contenders back to
back, alternating which goes first; the ratio reported is the median over
runs of ours / reference within a run, with its interquartile range. Below 1
means mtvision (or onnxruntime) is faster.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import onnxruntime as ort
import torch
import torchvision
from torch import nn
from torchvision.ops import box_iou
from torchvision.transforms.v2.functional import normalize as tv_normalize
from torchvision.transforms.v2.functional import to_dtype

import mtvision
from mtvision.data.image_io import load_image
from mtvision.data.normalization import INCEPTION_MEAN_RGB, INCEPTION_STD_RGB
from mtvision.engine.cli import run_cli
from mtvision.evaluation.topk_accuracy import TopKAccuracy
from mtvision.export import check_onnx_matches, export_onnx, onnx_session
from mtvision.export.runtimes import DeployedSession
from mtvision.heads.ssdlite_head import SOFTMAX
from mtvision.synthetic.shapes import SHAPE_CLASSES, render_scene
from mtvision.utils.parity import randomize_batch_norms_

NUM_CLASSES = 1000
#: The multi-task row's heads and class counts (ImageNet, COCO, PASCAL VOC) and the
#: single-task models it is timed against, with the same classes.
MULTITASK_CLASSES = dict(classification=1000, detection=80, segmentation=21)
SINGLE_TASK_MODELS = dict(
    classification="mobilenet_v2",
    detection="ssdlite320_mobilenet_v2",
    segmentation="deeplabv3_mobilenet_v2",
)
TOPK = (1, 5)
MAX_TOPK_RUNS = 5  # each run walks every image in Python; a few runs give a stable median


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mtvision vs reference speed ratios.")
    parser.add_argument(
        "--task",
        choices=TASKS,
        default=None,
        help="end to end, uint8 image in, final results out: mtvision torch eager, "
        "onnxruntime float and int8 against torchvision and the TFLite runtime "
        "(default: the network comparisons below)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="timed runs per contender (default 50; --task 20)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed runs first (default 10; --task 2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="intra-op threads for torch, onnxruntime and TFLite; several values: one "
        "table each (default 1: a phone core, and the least disturbed by other work on "
        "a shared machine)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="input height and width (default 224; with --task: "
        + ", ".join(f"{task} {size}" for task, size in TASK_INPUT_SIZES.items())
        + ")",
    )
    parser.add_argument(
        "--multitask-size",
        type=int,
        default=320,
        help="input height and width of the multi-task row (default 320, SSDLite's)",
    )
    parser.add_argument(
        "--multitask-output-stride",
        type=int,
        choices=(16, 32),
        default=None,
        help="output stride of the multi-task model (default: the model's, 16)",
    )
    parser.add_argument(
        "--topk-images", type=int, default=5000, help="predictions scored by the metric"
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where the networks run"
    )
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass")
    parser.add_argument(
        "--train", action="store_true", help="also time a training step (ours vs torchvision)"
    )
    parser.add_argument(
        "--calib",
        type=int,
        default=16,
        help="--task: images that calibrate int8 (real photos when ../shared/realdata is "
        "there, else synthetic scenes); the first is the timed image",
    )
    parser.add_argument(
        "--det-candidates",
        type=int,
        default=300,
        help="--task det/multitask: (anchor, class) pairs per image that reach NMS on "
        "each detector (untrained detectors score all pairs alike; default 300)",
    )
    parser.add_argument(
        "--block",
        type=int,
        default=3,
        help="--task: per run and contender, one untimed call, then this many timed "
        "calls whose median is the run's time (default 3)",
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 20 if args.task else 50
    if args.warmup is None:
        args.warmup = 2 if args.task else 10
    if args.size is None:
        args.size = TASK_INPUT_SIZES[args.task] if args.task else 224
    for name in (
        "block",
        "runs",
        "size",
        "multitask_size",
        "topk_images",
        "batch",
        "calib",
        "det_candidates",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.threads) < 1:
        parser.error("--threads must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available here")
    if args.task and (args.device != "cpu" or args.batch != 1 or args.train):
        parser.error("--task runs on CPU at batch 1: leave out --device, --batch and --train")
    return args


def on_device(function: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``function`` that, on a GPU, returns only once the kernels it queued have finished."""
    if device.type != "cuda":
        return function

    def synchronized():
        result = function()
        torch.cuda.synchronize(device)
        return result

    return synchronized


def time_group(
    functions: Sequence[Callable[[], object]], runs: int, warmup: int, block: int = 1
) -> list[list[float]]:
    """Wall times in ms of each of ``functions``, all run back to back, ``runs`` times.

    Run ``r`` starts with function ``r mod n`` and goes round in order, which
    spreads the advantage of going first (warm caches) evenly; grouping spreads
    slow drifts of a shared machine evenly over all of them, so per-run ratios
    are comparable. With ``block > 1`` each function's turn is one untimed call,
    then ``block`` timed calls whose median is the run's sample: a runtime's
    worker threads are then awake and alone, as in an application that runs one
    model continuously, and the spinning threads of the runtime before it (OpenMP,
    onnxruntime, XNNPACK and TBB pools spin-wait after their work) only slow the
    untimed call.
    """
    for _ in range(warmup):
        for function in functions:
            function()
    samples: list[list[float]] = [[] for _ in functions]
    for run in range(runs):
        for step in range(len(functions)):
            index = (run + step) % len(functions)
            function = functions[index]
            if block == 1:
                start = time.perf_counter()
                function()
                samples[index].append((time.perf_counter() - start) * 1e3)
                continue
            function()
            times = []
            for _ in range(block):
                start = time.perf_counter()
                function()
                times.append((time.perf_counter() - start) * 1e3)
            samples[index].append(statistics.median(times))
    return samples


def time_pair(
    ours: Callable[[], object], reference: Callable[[], object], runs: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Wall times in ms of ``ours()`` and ``reference()``, run back to back ``runs`` times.

    The order alternates from run to run (:func:`time_group` of two).
    """
    ours_ms, reference_ms = time_group((ours, reference), runs, warmup)
    return ours_ms, reference_ms


def make_row(
    name: str,
    ours_ms: list[float],
    reference_ms: list[float],
    check: str,
    images: int | None = None,
) -> dict:
    """Medians of both, and the median and quartiles of the per-run ratio ours / reference.

    ``images``: images per timed call, for rows that process images; adds
    ``images_per_s`` (ours, reference) from the median times.
    """
    ratios = sorted(o / r for o, r in zip(ours_ms, reference_ms, strict=True))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    row = {
        "name": name,
        "ours_ms": statistics.median(ours_ms),
        "reference_ms": statistics.median(reference_ms),
        "ratio": statistics.median(ratios),
        "ratio_iqr": (quartiles[0], quartiles[2]),
        "check": check,
    }
    if images is not None:
        row["images_per_s"] = (
            images * 1e3 / row["ours_ms"],
            images * 1e3 / row["reference_ms"],
        )
    return row


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, K) logits of mtvision's classifier (a MultiTaskModel) or of torchvision's model."""
    outputs = model(x)
    return outputs["classification"]["cls_logits"] if isinstance(outputs, dict) else outputs


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> str:
    return (
        f"max abs diff {float((a - b).abs().max()):.2g} of max abs logit {float(b.abs().max()):.2g}"
    )


def _batch_suffix(args) -> str:
    """How a row's name says where and how many at a time, when not the CPU default of 1."""
    parts = [args.device] if args.device != "cpu" else []
    parts += [f"batch {args.batch}"] if args.batch != 1 else []
    return f" ({', '.join(parts)})" if parts else ""


def bench_eager(args, ours: nn.Module, reference: nn.Module) -> list[dict]:
    """mtvision vs torchvision forward latency, contiguous and channels-last."""
    rows = []
    device = torch.device(args.device)
    image = torch.randn(
        args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)
    ).to(device)
    for layout, memory_format in (
        ("contiguous", torch.contiguous_format),
        ("channels_last", torch.channels_last),
    ):
        ours_l = copy.deepcopy(ours).to(device, memory_format=memory_format)
        reference_l = copy.deepcopy(reference).to(device, memory_format=memory_format)
        x = image.contiguous(memory_format=memory_format)
        with torch.inference_mode():
            check = _max_abs(_logits(ours_l, x), reference_l(x))
            times = time_pair(
                on_device(lambda: ours_l(x), device),  # noqa: B023 (called before the loop moves on)
                on_device(lambda: reference_l(x), device),  # noqa: B023
                args.runs,
                args.warmup,
            )
        name = f"mtvision vs torchvision eager, {layout}{_batch_suffix(args)}"
        rows.append(make_row(name, *times, check, images=args.batch))
    return rows


def bench_train(args, ours: nn.Module, reference: nn.Module) -> dict:
    """One SGD training step of mtvision's classifier vs torchvision's, channels-last."""
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,), generator=generator).to(device)
    steps, first_losses = [], []
    for model in (ours, reference):
        model = copy.deepcopy(model).to(device, memory_format=torch.channels_last).train()
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0  # same computation in both, so the losses can be compared
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(_logits(model, x), labels)
            loss.backward()
            optimizer.step()
            return loss

        first_losses.append(float(step().detach()))
        steps.append(on_device(step, device))
    times = time_pair(*steps, args.runs, args.warmup)
    check = f"first-step loss {first_losses[0]:.6g} vs {first_losses[1]:.6g}"
    name = f"mtvision vs torchvision training step, channels_last{_batch_suffix(args)}"
    return make_row(name, *times, check, images=args.batch)


def _output_shapes(outputs: dict[str, dict[str, torch.Tensor]]) -> str:
    """``"classification 1000, detection 2034x81+2034x4, ..."`` (per image) of raw head outputs."""
    return ", ".join(
        f"{head} " + "+".join("x".join(map(str, t.shape[1:])) for t in head_outputs.values())
        for head, head_outputs in outputs.items()
    )


def bench_multitask(args) -> dict:
    """One multi-task forward vs the three single-task models one after another, channels-last."""
    device = torch.device(args.device)
    size = args.multitask_size
    stride = (
        {}
        if args.multitask_output_stride is None
        else {"output_stride": args.multitask_output_stride}
    )
    ours = mtvision.create_model("mobilenet_v2_multitask", num_classes=MULTITASK_CLASSES, **stride)
    singles = [
        mtvision.create_model(SINGLE_TASK_MODELS[head], num_classes=classes)
        for head, classes in MULTITASK_CLASSES.items()
    ]
    ours = ours.eval().to(device, memory_format=torch.channels_last)
    singles = [m.eval().to(device, memory_format=torch.channels_last) for m in singles]
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(4))
    x = x.to(device).contiguous(memory_format=torch.channels_last)

    def one_after_another() -> dict:
        outputs = {}
        for model in singles:
            outputs.update(model(x))
        return outputs

    with torch.inference_mode():
        check = f"{_output_shapes(ours(x))} vs {_output_shapes(one_after_another())}"
        times = time_pair(
            on_device(lambda: ours(x), device),
            on_device(one_after_another, device),
            args.runs,
            args.warmup,
        )
    name = (
        f"multi-task (OS {ours.backbone.output_stride}) vs classifier + SSDLite + DeepLabv3, "
        f"{size}x{size}, channels_last"
        f"{_batch_suffix(args)}"
    )
    return make_row(name, *times, check, images=args.batch)


def bench_onnxruntime(args, ours: nn.Module, work_dir: Path) -> dict:
    """onnxruntime on the exported mtvision model vs the same model in torch eager mode."""
    path = export_onnx(ours, work_dir / "mobilenet_v2.onnx", (1, 3, args.size, args.size))
    session = onnx_session(path, threads=args.threads)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    feed = {session.get_inputs()[0].name: x.numpy()}
    max_diff = check_onnx_matches(ours, path, x)
    with torch.inference_mode():
        scale = float(_logits(ours, x).abs().max())
        times = time_pair(lambda: session.run(None, feed), lambda: ours(x), args.runs, args.warmup)
    check = f"max abs diff {max_diff:.2g} of max abs logit {scale:.2g}"
    batch = f", batch {args.batch}" if args.batch != 1 else ""
    name = f"onnxruntime vs torch eager (mtvision, contiguous{batch})"
    return make_row(name, *times, check, images=args.batch)


def bench_topk(args) -> dict:
    """TopKAccuracy over N predictions vs one vectorised torch.topk."""
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(args.topk_images, NUM_CLASSES, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (args.topk_images,), generator=generator)
    # Lift the true class so that the accuracies are far from 0 and the check means something.
    scores[torch.arange(args.topk_images), labels] += 3.0
    predictions = [
        {"pred_score": score, "gt_label": int(label)}
        for score, label in zip(scores, labels, strict=True)
    ]

    def ours() -> dict[str, float]:
        metric = TopKAccuracy(topk=TOPK)
        metric.process({}, predictions)
        return metric.compute_metrics(metric.results)

    def reference() -> dict[str, float]:
        hits = torch.topk(scores, max(TOPK), dim=1).indices == labels[:, None]
        return {f"top{k}": int(hits[:, :k].any(dim=1).sum()) / len(labels) for k in TOPK}

    expected = reference()
    if ours() != expected:
        raise AssertionError(f"TopKAccuracy {ours()} != torch.topk {expected}")
    times = time_pair(ours, reference, min(args.runs, MAX_TOPK_RUNS), warmup=1)
    accuracies = ", ".join(f"{key} {value:.4f}" for key, value in expected.items())
    return make_row(
        f"TopKAccuracy vs torch.topk ({args.topk_images} x {NUM_CLASSES} scores)",
        *times,
        f"same accuracies ({accuracies})",
    )


def format_table(rows: list[dict]) -> str:
    """A Markdown table: names and checks left-aligned, numbers right-aligned; a ``goal``
    column when a row has a goal (``ratio <= goal``: met or missed)."""
    header = ["benchmark", "ours ms", "reference ms", "ratio", "ratio p25-p75", "check"]
    with_goals = any("goal" in row for row in rows)
    if with_goals:
        header.insert(5, "goal")
    lines = [header]
    for row in rows:
        cells = [
            row["name"],
            f"{row['ours_ms']:.3f}",
            f"{row['reference_ms']:.3f}",
            f"{row['ratio']:.2f}",
            f"{row['ratio_iqr'][0]:.2f}-{row['ratio_iqr'][1]:.2f}",
            row["check"],
        ]
        if with_goals:
            cells.insert(5, _goal_text(row))
        lines.append(cells)
    return markdown_table(lines, numeric={1, 2, 3, 4})


def _goal_text(row: dict) -> str:
    if "goal" not in row:
        return ""
    return f"<= {row['goal']:.2f}: {'met' if row['ratio'] <= row['goal'] else 'MISSED'}"


def markdown_table(lines: list[list[str]], numeric: set[int]) -> str:
    """``lines[0]`` as the header, the ``numeric`` columns right-aligned, cells padded."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def render(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if i in numeric else "-" * w for i, w in enumerate(widths)]
    return "\n".join([render(lines[0]), render(rule), *(render(line) for line in lines[1:])])


# ------------------------------------------------------------ end to end (--task)

#: Input size per task: the classifier's 224, SSDLite's 320, DeepLab's 513 (Google's
#: file); the multi-task row at SSDLite's size.
TASK_INPUT_SIZES = dict(cls=224, det=320, seg=513, multitask=320)
TASKS = tuple(TASK_INPUT_SIZES)
E2E_TOPK = 5
#: Google's int8 files in ``<realdata>/coral_mobilenetv2_tflite/models`` (its README).
TFLITE_FOLDER = "coral_mobilenetv2_tflite"
TFLITE_FILES = dict(
    cls="tf2_mobilenet_v2_1.0_224_ptq.tflite", seg="deeplabv3_mnv2_pascal_quant.tflite"
)
REALDATA_ENV = "MTVISION_REALDATA"
#: ImageNet, COCO and PASCAL VOC classes of the single-task heads.
TASK_CLASSES = dict(cls=1000, det=80, seg=21)
#: torchvision's reference preprocessing (its ``ImageClassification`` /
#: ``SemanticSegmentation`` presets: to float in [0, 1], then these).
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)


class Contender(NamedTuple):
    """One way to get final results from a uint8 RGB (H, W, 3) image.

    ``make(threads)`` builds the timed call (onnxruntime sessions and TFLite
    interpreters are made per thread count; torch's threads are set by the
    caller); ``result(output)`` turns what the call returned into numpy arrays
    (``labels``/``scores``, ``boxes``/``scores``/``labels``, ``mask``; per head for
    the multi-task rows), outside the timing. ``key``: the short name ratios use.
    """

    key: str
    name: str
    make: Callable[[int], Callable[[], object]]
    result: Callable[[object], dict]


class Task(NamedTuple):
    """The contenders of one ``--task``. ``ratios``: (numerator key, denominator key,
    goal or None), the goal meaning ratio <= goal; ``agreement(results)`` compares
    the contenders' results, one line per check; ``notes``: what was set up or left
    out, and why."""

    title: str
    contenders: list[Contender]
    ratios: list[tuple[str, str, float | None]]
    agreement: Callable[[dict[str, dict]], list[str]]
    notes: list[str]


def realdata_folder() -> Path | None:
    """``$MTVISION_REALDATA``, else ``<project>/../shared/realdata``; ``None`` when absent."""
    path = Path(
        os.environ.get(REALDATA_ENV)
        or Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
    )
    return path if path.is_dir() else None


def benchmark_images(count: int, size: int) -> tuple[list[np.ndarray], str]:
    """``count`` uint8 RGB (size, size, 3) images and a line saying what they are.

    Real photos of the real-data folder (Coral's test photos, then the VOC
    crops), each resized to size x size, when it is there; else synthetic shapes
    scenes (the demo data's generator). The first is the timed image; all of
    them calibrate int8.
    """
    folder = realdata_folder()
    paths: list[Path] = []
    if folder is not None:
        for pattern in (
            f"{TFLITE_FOLDER}/images/*",
            "voc2012_seg_samples_vainf/VOCdevkit/VOC2012/JPEGImages/*",
        ):
            paths += sorted(
                path
                for path in folder.glob(pattern)
                if path.suffix.lower() in (".jpg", ".jpeg", ".png") and "mask" not in path.name
            )
    if paths:
        images = [
            cv2.resize(load_image(path), (size, size), interpolation=cv2.INTER_AREA)
            for path in paths[:count]
        ]
        return images, f"{len(images)} real photos from {folder}, resized to {size}x{size}"
    rng = np.random.default_rng(0)
    images = [
        render_scene(rng, size, size, index % len(SHAPE_CLASSES)).image for index in range(count)
    ]
    return images, f"{count} synthetic shapes scenes, {size}x{size} (no real-data folder)"


# ----------------------------------------------------------- results as numpy


def _topk_result(output) -> dict:
    """``(values, indices)`` of ``torch.topk`` over (1, K) scores."""
    values, indices = output
    return {"scores": values[0].numpy(), "labels": indices[0].numpy()}


def _deployed_result(task: str, outputs: dict[str, np.ndarray], prefix: str = "") -> dict:
    """Image 0's results from a deployed graph's outputs (``prefix``: ``"<head>."``)."""
    if task == "cls":
        return {"scores": outputs[f"{prefix}scores"][0], "labels": outputs[f"{prefix}labels"][0]}
    if task == "det":
        count = int(outputs[f"{prefix}num_detections"][0])
        return {
            field_: outputs[f"{prefix}{field_}"][0, :count]
            for field_ in ("boxes", "scores", "labels")
        }
    return {"mask": outputs[f"{prefix}mask"][0]}


def _describe(result: dict) -> str:
    """One cell: what a contender returned for the timed image."""
    if "mask" in result:
        mask = result["mask"]
        return f"mask {mask.shape[0]}x{mask.shape[1]}, {len(np.unique(mask))} classes"
    if "boxes" in result:
        return f"{len(result['boxes'])} boxes"
    if "labels" in result:
        return f"top-{len(result['labels'])}, top-1 {int(result['labels'][0])}"
    return "; ".join(f"{head}: {_describe(head_result)}" for head, head_result in result.items())


def _same_top(a: dict, b: dict, names: str) -> str:
    same = int(a["labels"][0]) == int(b["labels"][0])
    overlap = len(set(a["labels"].tolist()) & set(b["labels"].tolist()))
    diff = float(np.abs(np.asarray(a["scores"], np.float64) - b["scores"]).max())
    return (
        f"{names}: top-1 {'same' if same else 'DIFFERENT'}, top-5 overlap {overlap}/{len(a['labels'])}, "
        f"max |score diff| {diff:.2g}"
    )


def _same_boxes(a: dict, b: dict, names: str) -> str:
    """Counts, and for each box of ``a`` the best IoU with a box of ``b`` of its class."""
    if len(a["boxes"]) == 0 or len(b["boxes"]) == 0:
        return f"{names}: {len(a['boxes'])} vs {len(b['boxes'])} boxes"
    iou = box_iou(torch.as_tensor(a["boxes"]), torch.as_tensor(b["boxes"]))
    same_class = torch.as_tensor(a["labels"])[:, None] == torch.as_tensor(b["labels"])[None]
    # A box clipped to zero area has IoU 0/0 with itself: count it as not matched.
    best = (iou.nan_to_num(0.0) * same_class).max(dim=1).values
    return (
        f"{names}: {len(a['boxes'])} vs {len(b['boxes'])} boxes, best same-class IoU "
        f"min {float(best.min()):.3f} median {float(best.median()):.3f}"
    )


def _same_mask(a: dict, b: dict, names: str) -> str:
    agreement = float((np.asarray(a["mask"]) == np.asarray(b["mask"])).mean())
    return f"{names}: {100 * agreement:.2f} % of pixels the same class"


SAME = dict(cls=_same_top, det=_same_boxes, seg=_same_mask)


def _mtvision_agreement(task: str) -> Callable[[dict[str, dict]], list[str]]:
    """torch vs onnxruntime float (the export), onnxruntime int8 vs float (quantisation)."""
    same = SAME[task]

    def agreement(results: dict[str, dict]) -> list[str]:
        lines = [
            same(results["mtvision torch"], results["mtvision ort float"], "torch vs ort float"),
            same(results["mtvision ort int8"], results["mtvision ort float"], "ort int8 vs float"),
        ]
        for precision in ("float", "int8"):
            if f"mtvision openvino {precision}" in results:
                lines.append(
                    same(
                        results[f"mtvision openvino {precision}"],
                        results[f"mtvision ort {precision}"],
                        f"openvino {precision} vs ort {precision}",
                    )
                )
        if task == "cls" and "torchvision" in results:
            lines.append(
                same(
                    results["mtvision torch"],
                    results["torchvision"],
                    "torch vs torchvision (same weights)",
                )
            )
        return lines

    return agreement


# ------------------------------------------------------------ contenders


def _chw_batch(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (1, 3, H, W) uint8, the deployed graphs' input."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))[None]


def _eager_result(task: str, output, mask_of: Callable) -> dict:
    """An eager contender's output in the comparison format: top-5 for ``cls``, boxes /
    scores / labels for ``det``, the class map (``mask_of(output)``) for ``seg``."""
    if task == "cls":
        return _topk_result(output)
    if task == "det":
        return {key: output[key].numpy() for key in ("boxes", "scores", "labels")}
    return {"mask": mask_of(output).numpy()}


def mtvision_torch(model: nn.Module, image: np.ndarray, task: str) -> Contender:
    """The model's full predict path: data preprocessor (cast, normalisation), network,
    the heads' post-processing (``test_step``), top-5 for the classifier."""

    def make(threads: int) -> Callable[[], object]:
        def run():
            data = {"inputs": [torch.from_numpy(image).permute(2, 0, 1)], "data_samples": [{}]}
            with torch.inference_mode():
                (prediction,) = model.test_step(data)
                if task == "cls":
                    return prediction["pred_score"][None].topk(E2E_TOPK, dim=1)
                return prediction

        return run

    def result(output) -> dict:
        return _eager_result(task, output, lambda out: out["pred_mask"])

    return Contender("mtvision torch", "mtvision torch eager (predict path)", make, result)


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
    graphs: list[tuple[Path, dict[str, str]]],
    image: np.ndarray,
    runtime: str = "onnxruntime",
) -> Contender:
    """Deployed graphs run one after another on the image, one session each, in
    ``runtime`` (``"onnxruntime"`` or ``"openvino"``).

    ``graphs``: (file, {head: task}) per graph; a graph with several heads names its
    outputs ``"<head>.<field>"``. The result is the one head's fields, or per head.
    """
    batch = _chw_batch(image)

    def make(threads: int) -> Callable[[], object]:
        calls = [_deployed_call(runtime, path, threads, batch) for path, _ in graphs]
        return lambda: [call() for call in calls]

    def result(outputs: list[dict]) -> dict:
        results = {}
        for (_, heads), graph_outputs in zip(graphs, outputs, strict=True):
            for head, task in heads.items():
                prefix = f"{head}." if len(heads) > 1 else ""
                results[head] = _deployed_result(task, graph_outputs, prefix)
        return next(iter(results.values())) if len(results) == 1 else results

    return Contender(key, name, make, result)


def tflite_contender(task: str, image: np.ndarray) -> tuple[Contender | None, str]:
    """Google's TFLite runtime on the Coral int8 file of ``task``, or ``None`` and why not."""
    folder = realdata_folder()
    if folder is None:
        return None, f"TFLite row left out: ../shared/realdata not present (set {REALDATA_ENV})"
    path = folder / TFLITE_FOLDER / "models" / TFLITE_FILES[task]
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

    def result(output) -> dict:
        if task == "cls":
            top, scores = output
            return {"labels": top - 1, "scores": scores[top].astype(np.float32) / 255}
        return {"mask": output[0]}

    name = f"TFLite runtime int8 ({path.name}, XNNPACK)"
    return Contender("TFLite int8", name, make, result), f"TFLite file: {path}"


def _torchvision_input(image: np.ndarray, normalize: bool) -> torch.Tensor:
    x = to_dtype(torch.from_numpy(image).permute(2, 0, 1), torch.float32, scale=True)
    return tv_normalize(x, TORCHVISION_MEAN, TORCHVISION_STD) if normalize else x


def torchvision_contender(task: str, model: nn.Module, image: np.ndarray) -> Contender:
    """torchvision's model eager, its preprocessing and post-processing included: the
    classifier's normalisation, softmax and top-5; SSDLite's own transform (resize,
    normalisation) and per-class NMS; DeepLab's normalisation and argmax of ``out``."""

    def make(threads: int) -> Callable[[], object]:
        def run():
            with torch.inference_mode():
                if task == "cls":
                    x = _torchvision_input(image, normalize=True)[None]
                    return model(x).softmax(dim=1).topk(E2E_TOPK, dim=1)
                if task == "det":
                    return model([_torchvision_input(image, normalize=False)])[0]
                x = _torchvision_input(image, normalize=True)[None]
                return model(x)["out"].argmax(dim=1)

        return run

    def result(output) -> dict:
        return _eager_result(task, output, lambda out: out[0])

    name = {
        "cls": "torchvision eager (mobilenet_v2)",
        "det": "torchvision eager (ssdlite320_mobilenet_v3_large, transform + NMS)",
        "seg": "torchvision eager (deeplabv3_mobilenet_v3_large)",
    }[task]
    return Contender("torchvision", name, make, result)


# ------------------------------------------------------------ models and files


def _detection_scores(model: nn.Module, image: np.ndarray) -> torch.Tensor:
    """(A, C) class scores of mtvision's detection head on ``image``, as its post-processing
    computes them (softmax without background, or sigmoid)."""
    data = {"inputs": [torch.from_numpy(image).permute(2, 0, 1)], "data_samples": [{}]}
    with torch.inference_mode():
        inputs = model.data_preprocessor(data, False)["inputs"]
        head = model.heads["detection"]
        logits = model(inputs)["detection"]["cls_logits"][0].float()
        return logits.softmax(-1)[:, 1:] if head.cls_loss == SOFTMAX else logits.sigmoid()


def _threshold_for(scores: torch.Tensor, candidates: int) -> float:
    """The score threshold that lets ``candidates`` (anchor, class) pairs through."""
    flat = scores.flatten()
    return float(flat.topk(min(candidates + 1, flat.numel())).values[-1])


def set_candidates_(model: nn.Module, image: np.ndarray, candidates: int) -> str:
    """Set the detection head's score threshold so that about ``candidates`` pairs reach
    NMS on ``image``: untrained weights score every pair alike, and a threshold that
    lets all or none through would make NMS's cost unlike a trained detector's."""
    threshold = _threshold_for(_detection_scores(model, image), candidates)
    model.heads["detection"].test_cfg["score_threshold"] = threshold
    # At this threshold the per-class cap of 300 candidates cannot bind (there are
    # ``candidates`` pairs in all), so it is left out as a deployment would
    # (``tools/export_onnx.py --topk-candidates 0``); the results are the same.
    model.heads["detection"].test_cfg["topk_candidates"] = None
    return (
        f"score threshold {threshold:.6g} ({candidates} candidates before NMS, no per-class top-k)"
    )


class _SSDNetwork(nn.Module):
    """torchvision SSD's backbone and head on a normalised batch (train mode needs no
    targets this way), for :func:`randomize_batch_norms_`."""

    def __init__(self, ssd: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = ssd.backbone, ssd.head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(list(self.backbone(x).values()))


def set_torchvision_candidates_(model: nn.Module, image: np.ndarray, candidates: int) -> str:
    """The same for torchvision's SSD (softmax scores without the background class)."""
    with torch.inference_mode():
        images, _ = model.transform([_torchvision_input(image, normalize=False)])
        features = list(model.backbone(images.tensors).values())
        logits = model.head(features)["cls_logits"][0]
    threshold = _threshold_for(logits.softmax(-1)[:, 1:], candidates)
    model.score_thresh = threshold
    return f"score threshold {threshold:.6g} ({candidates} candidates before NMS)"


def deploy_files(
    model: nn.Module, name: str, size: int | None, images: list[np.ndarray], work_dir: Path
) -> dict[str, Path]:
    """The deployed graph (uint8 in, post-processing inside) and its int8 version."""
    from mtvision.export import export_deploy_onnx

    float_path = work_dir / f"{name}.onnx"
    export_deploy_onnx(
        model, float_path, input_size=None if size is None else (size, size), topk=E2E_TOPK
    )
    int8_path = work_dir / f"{name}.int8.onnx"
    quantize_int8(float_path, int8_path, images)
    return {"float": float_path, "int8": int8_path}


def quantize_int8(float_path: Path, int8_path: Path, images: list[np.ndarray]) -> None:
    """The project's static int8 quantisation, calibrated on ``images`` (HWC uint8)."""
    from mtvision.export.quantize import quantize_onnx

    quantize_onnx(float_path, int8_path, [_chw_batch(image) for image in images])


def _single_task_model(task: str, classes: int | None = None, **kwargs) -> nn.Module:
    name = SINGLE_TASK_MODELS[dict(cls="classification", det="detection", seg="segmentation")[task]]
    model = mtvision.create_model(name, num_classes=classes or TASK_CLASSES[task], **kwargs)
    return randomize_batch_norms_(model, seed=5)


def build_task(args: argparse.Namespace, work_dir: Path) -> Task:
    """Models, deployed files and contenders of ``args.task`` at ``args.size``."""
    size = args.size
    torch.manual_seed(0)  # the models' random initialisation, hence thresholds and outputs
    images, source = benchmark_images(args.calib, size)
    image = images[0]
    notes = [f"image and calibration: {source}"]
    if args.task == "multitask":
        return _multitask_task(args, images, work_dir, notes)
    task = args.task
    if task == "cls":
        reference = torchvision.models.mobilenet_v2(weights=None, num_classes=TASK_CLASSES[task])
        reference = randomize_batch_norms_(reference, seed=0).eval()
        model = mtvision.create_model("mobilenet_v2", num_classes=TASK_CLASSES[task]).eval()
        model.load_torchvision_state_dict(reference.state_dict())
        notes.append(
            "mtvision's classifier holds torchvision's weights (BatchNorm statistics randomised)"
        )
    elif task == "det":
        model = _single_task_model(task)
        reference = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None,
            weights_backbone=None,
            detections_per_img=model.heads["detection"].test_cfg["max_detections"],
        )
        # Order-1 activations, as for mtvision's model: a fresh init scores every pair alike.
        randomize_batch_norms_(_SSDNetwork(reference), seed=7, input_size=size)
        reference.eval()
        notes.append("mtvision SSDLite: " + set_candidates_(model, image, args.det_candidates))
        notes.append(
            "torchvision SSDLite: "
            + set_torchvision_candidates_(reference, image, args.det_candidates)
        )
    else:
        # The on-device DeepLabv3 as Google's file computes it (docs/pretrained.md): its
        # upsampling rule and [-1, 1] inputs; at 513 (odd) PyTorch's padding is TF's SAME.
        model = _single_task_model(
            task,
            align_corners=True,
            data_preprocessor=dict(
                type="DataPreprocessor", mean=INCEPTION_MEAN_RGB, std=INCEPTION_STD_RGB
            ),
        )
        reference = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=TASK_CLASSES[task], aux_loss=False
        ).eval()
    files = deploy_files(model, task, None if task == "seg" else size, images, work_dir)
    heads = {"cls": "classification", "det": "detection", "seg": "segmentation"}
    contenders = [
        mtvision_torch(model, image, task),
        deployed_graphs(
            "mtvision ort float",
            "mtvision onnxruntime float (deployed graph)",
            [(files["float"], {heads[task]: task})],
            image,
        ),
        deployed_graphs(
            "mtvision ort int8",
            "mtvision onnxruntime int8 (deployed graph, quantised)",
            [(files["int8"], {heads[task]: task})],
            image,
        ),
        torchvision_contender(task, reference, image),
    ]
    ratios: list[tuple[str, str, float | None]] = []
    tflite = None
    if task in TFLITE_FILES:
        tflite, note = tflite_contender(task, image)
        notes.append(note)
        if tflite is not None:
            contenders.append(tflite)
    with_openvino, note = openvino_available()
    notes.append(note)
    int8_keys = ["mtvision ort int8"]
    if with_openvino:
        for precision in ("float", "int8"):
            contenders.append(
                deployed_graphs(
                    f"mtvision openvino {precision}",
                    f"mtvision OpenVINO {precision} (the same deployed file)",
                    [(files[precision], {heads[task]: task})],
                    image,
                    runtime="openvino",
                )
            )
        int8_keys.append("mtvision openvino int8")
    goal = dict(cls=0.2, det=0.33, seg=0.2)[task]
    for key in int8_keys:
        if tflite is not None:
            ratios.append((key, "TFLite int8", 1.0))
        ratios.append((key, "torchvision", goal))
    ratios += [
        ("mtvision ort float", "torchvision", None),
        ("mtvision torch", "torchvision", None),
        ("mtvision ort int8", "mtvision ort float", None),
    ]
    if with_openvino:
        ratios.append(("mtvision openvino int8", "mtvision ort int8", None))
    what = dict(cls="top-5", det="boxes after NMS", seg="class map")[task]
    title = f"{task}: uint8 RGB {size}x{size} in, {what} out"
    return Task(title, contenders, ratios, _mtvision_agreement(task), notes)


MULTITASK_HEADS = dict(classification="cls", detection="det", segmentation="seg")


def _multitask_task(
    args: argparse.Namespace, images: list[np.ndarray], work_dir: Path, notes: list[str]
) -> Task:
    """The multi-task deployed graph against the three single-task deployed graphs run
    one after another on the same image, in float and in int8."""
    size, image = args.size, images[0]
    stride = (
        {}
        if args.multitask_output_stride is None
        else {"output_stride": args.multitask_output_stride}
    )
    model = mtvision.create_model("mobilenet_v2_multitask", num_classes=MULTITASK_CLASSES, **stride)
    model = randomize_batch_norms_(model, seed=6)
    notes.append("multi-task SSDLite: " + set_candidates_(model, image, args.det_candidates))
    files = deploy_files(model, "multitask", size, images, work_dir)
    singles = {}
    for head, task in MULTITASK_HEADS.items():
        single = _single_task_model(task, MULTITASK_CLASSES[head])
        if task == "det":
            notes.append(
                "single-task SSDLite: " + set_candidates_(single, image, args.det_candidates)
            )
        singles[head] = deploy_files(
            single, f"single_{task}", None if task == "seg" else size, images, work_dir
        )
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
                    [(files[precision], MULTITASK_HEADS)],
                    image,
                    runtime,
                ),
                deployed_graphs(
                    f"3 single-task {short} {precision}",
                    f"classifier + SSDLite + DeepLabv3 graphs one after another, "
                    f"{runtime} {precision}",
                    [
                        (singles[head][precision], {head: task})
                        for head, task in MULTITASK_HEADS.items()
                    ],
                    image,
                    runtime,
                ),
            ]
            ratios.append(
                (f"multi-task {short} {precision}", f"3 single-task {short} {precision}", 0.5)
            )

    def agreement(results: dict[str, dict]) -> list[str]:
        return [
            SAME[task](
                results["multi-task ort int8"][head],
                results["multi-task ort float"][head],
                f"multi-task {head} ort int8 vs float",
            )
            for head, task in MULTITASK_HEADS.items()
        ]

    title = f"multitask: uint8 RGB {size}x{size} in, top-5 + boxes + class map out"
    return Task(title, contenders, ratios, agreement, notes)


def run_task(args: argparse.Namespace) -> list[dict]:
    """Build ``args.task`` once, then time its contenders at each thread count; print and
    return one table per thread count."""
    with tempfile.TemporaryDirectory() as work_dir:
        task = build_task(args, Path(work_dir))
        print(task.title)
        for note in task.notes:
            print(f"  {note}")
        tables = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            calls = [contender.make(threads) for contender in task.contenders]
            results = {
                contender.key: contender.result(call())
                for contender, call in zip(task.contenders, calls, strict=True)
            }
            samples = time_group(calls, args.runs, args.warmup, args.block)
            tables.append(_task_table(args, task, threads, results, samples))
    return tables


def _task_table(args, task: Task, threads: int, results: dict, samples: list[list[float]]) -> dict:
    """Print and return one thread count's contenders, ratios and agreement checks."""
    by_key = {c.key: ms for c, ms in zip(task.contenders, samples, strict=True)}
    contenders = []
    for contender, ms in zip(task.contenders, samples, strict=True):
        quartiles = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        contenders.append(
            {
                "key": contender.key,
                "name": contender.name,
                "median_ms": statistics.median(ms),
                "iqr_ms": (quartiles[0], quartiles[2]),
                "output": _describe(results[contender.key]),
            }
        )
    ratios = []
    for numerator, denominator, goal in task.ratios:
        outputs = f"{_describe(results[numerator])} vs {_describe(results[denominator])}"
        row = make_row(
            f"{numerator} / {denominator}", by_key[numerator], by_key[denominator], outputs
        )
        if goal is not None:
            row["goal"] = goal
        ratios.append(row)
    agreement = task.agreement(results)
    print(
        f"\nthreads {threads}, batch 1, {args.runs} runs after {args.warmup} warm-up "
        f"(per run and contender in rotating order: 1 untimed call, median of {args.block} timed)"
    )
    lines = [["contender", "median ms", "p25-p75 ms", "output"]] + [
        [
            c["name"],
            f"{c['median_ms']:.2f}",
            f"{c['iqr_ms'][0]:.2f}-{c['iqr_ms'][1]:.2f}",
            c["output"],
        ]
        for c in contenders
    ]
    print(markdown_table(lines, numeric={1, 2}))
    print()
    print(format_table(ratios))
    for line in agreement:
        print(f"  {line}")
    return {
        "task": args.task,
        "threads": threads,
        "contenders": contenders,
        "ratios": ratios,
        "agreement": agreement,
        "notes": task.notes,
    }


def main(argv=None) -> list[dict]:
    """Run the benchmarks and print the tables; returns their rows (with ``--task``: one
    dict per thread count, see :func:`run_task`)."""
    args = parse_args(argv)
    previous_threads = torch.get_num_threads()
    try:
        if args.task:
            _print_versions(args)
            return run_task(args)
        rows = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            rows += _run(argparse.Namespace(**{**vars(args), "threads": threads}))
        return rows
    finally:
        # main() is also called in-process (tests); leave torch's thread pool as it was.
        torch.set_num_threads(previous_threads)


def _print_versions(args: argparse.Namespace) -> None:
    try:
        from ai_edge_litert import __version__ as litert_version
    except ImportError:
        litert_version = "not installed"
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"onnxruntime {ort.__version__}, ai-edge-litert {litert_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )


def _device_description(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return platform.machine()


def _run(args: argparse.Namespace) -> list[dict]:
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"onnxruntime {ort.__version__}, {_device_description(args.device)}; "
        f"threads {args.threads}, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.runs} paired runs after {args.warmup} warm-up"
    )
    reference = torchvision.models.mobilenet_v2(weights=None, num_classes=NUM_CLASSES)
    reference = randomize_batch_norms_(reference, seed=0).eval()
    ours = mtvision.create_model("mobilenet_v2", num_classes=NUM_CLASSES).eval()
    ours.load_torchvision_state_dict(reference.state_dict())
    rows = bench_eager(args, ours, reference)
    if args.device == "cpu":
        with tempfile.TemporaryDirectory() as work_dir:
            rows.append(bench_onnxruntime(args, ours, Path(work_dir)))
    if args.train:
        rows.append(bench_train(args, ours, reference))
    rows.append(bench_multitask(args))
    rows.append(bench_topk(args))
    print(format_table(rows))
    print("ratio = ours / reference per paired run, median (below 1: ours is faster)")
    print("images per second (median time), ours / reference:")
    for row in rows:
        if "images_per_s" in row:
            ours_ips, reference_ips = row["images_per_s"]
            print(f"  {row['name']}: {ours_ips:.1f} / {reference_ips:.1f}")
    return rows


if __name__ == "__main__":
    run_cli(main)
