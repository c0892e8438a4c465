"""Speed of mtvision against the references it replaces, as ratios, in one process and one run.

    python tools/benchmark.py --task cls|det|seg|seg-ade|multitask [--threads 1 2] [--size S]
        [--runs 50] [--warmup 10] [--calib 16] [--det-candidates 300]
        [--phone-formats tflite executorch]
    python tools/benchmark.py [--runs 50] [--warmup 10] [--threads 1] [--size 224]
        [--multitask-size 320] [--multitask-output-stride 16|32] [--topk-images 5000] [--device cpu|cuda] [--batch 1] [--train]

``--task``: end to end, what a user's application sees (uint8 image in, final
results out; mtvision torch, its deployed graph in onnxruntime / OpenVINO float and
int8, its LiteRT .tflite and ExecuTorch .pte files float and int8, torchvision,
Google's TFLite runtime; ``seg-ade``: Google's MLPerf DeepLabv3+ converted by
mtvision against Google's file): :mod:`mtvision.benchmarks.end_to_end`.
Without ``--task``: network comparisons (mtvision vs torchvision eager, onnxruntime
vs torch, one multi-task forward vs three single-task models, TopKAccuracy vs
``torch.topk``): :mod:`mtvision.benchmarks.networks`. Ratios are medians of per-run
ratios of contenders timed back to back in rotating order
(:mod:`mtvision.benchmarks.timing`); below 1 means mtvision (or onnxruntime) is
faster. docs/benchmarks.md has what each row runs and the measured tables.
"""

from __future__ import annotations

import argparse

import torch

from mtvision.benchmarks import TASK_INPUT_SIZES, TASKS, BenchmarkOptions, run_benchmarks
from mtvision.benchmarks.phone_files import PHONE_FORMATS
from mtvision.engine.cli import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mtvision vs reference speed ratios.")
    parser.add_argument(
        "--task",
        choices=TASKS,
        default=None,
        help="end to end, uint8 image in, final results out: mtvision torch eager, "
        "onnxruntime float and int8, LiteRT and ExecuTorch files against torchvision and "
        "the TFLite runtime; seg-ade: Google's MLPerf DeepLabv3+ (ADE20K, 512) converted "
        "and exported by mtvision against Google's int8 file (needs ../shared/realdata) "
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
    parser.add_argument(
        "--phone-formats",
        nargs="*",
        choices=PHONE_FORMATS,
        default=list(PHONE_FORMATS),
        help="--task: the phone formats whose float and int8 files (exported from the same "
        "model) join the ONNX rows; rows of a format whose extra is not installed are left "
        "out with a note (default: tflite executorch; none given: ONNX only)",
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


def main(argv=None) -> list[dict]:
    """Run the benchmarks and print the tables; returns their rows (with ``--task``: one
    dict per thread count), see :func:`mtvision.benchmarks.run_benchmarks`."""
    args = parse_args(argv)
    options = {
        **vars(args),
        "threads": tuple(args.threads),
        "phone_formats": tuple(dict.fromkeys(args.phone_formats)),
    }
    return run_benchmarks(BenchmarkOptions(**options))


if __name__ == "__main__":
    run_cli(main)
