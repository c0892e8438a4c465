"""Speed of mtvision against the references it replaces, as ratios, in one process and one run.

    python tools/benchmark.py [--runs 50] [--warmup 10] [--threads 1] [--size 224]
        [--topk-images 5000] [--device cpu|cuda] [--batch 1] [--train]

Measured by default on CPU, batch 1, eval mode, ``torch.inference_mode``:

1. mtvision's MobileNetV2 1.0 classifier (``create_model("mobilenet_v2")``)
   against torchvision's ``mobilenet_v2(weights=None)``, with the torchvision
   model's weights (BatchNorm statistics randomised so that logits are of
   order 1) copied into ours and the logits checked to agree, in contiguous
   and channels-last memory format;
2. onnxruntime (CPUExecutionProvider) on mtvision's model exported to ONNX
   against the same model in torch eager mode (contiguous);
3. ``TopKAccuracy`` (process + compute_metrics) against ``torch.topk`` on the
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
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
import torchvision
from torch import nn

import mtvision
from mtvision.engine.cli import run_cli
from mtvision.evaluation.topk_accuracy import TopKAccuracy
from mtvision.export import check_onnx_matches, export_onnx, onnx_session
from mtvision.utils.parity import randomize_batch_norms_

NUM_CLASSES = 1000
TOPK = (1, 5)
MAX_TOPK_RUNS = 5  # each run walks every image in Python; a few runs give a stable median


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mtvision vs reference speed ratios.")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per contender")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads for torch and onnxruntime (default 1: a phone core, "
        "and the least disturbed by other work on a shared machine)",
    )
    parser.add_argument("--size", type=int, default=224, help="input height and width")
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
    args = parser.parse_args(argv)
    for name in ("runs", "threads", "size", "topk_images", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available here")
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


def time_pair(
    ours: Callable[[], object], reference: Callable[[], object], runs: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Wall times in ms of ``ours()`` and ``reference()``, run back to back ``runs`` times.

    The order alternates from run to run, which cancels the advantage of going
    first (warm caches); pairing spreads slow drifts of a shared machine
    evenly over both.
    """
    for _ in range(warmup):
        ours()
        reference()
    ours_ms, reference_ms = [], []
    for run in range(runs):
        order = ((ours, ours_ms), (reference, reference_ms))
        for function, samples in order if run % 2 == 0 else reversed(order):
            start = time.perf_counter()
            function()
            samples.append((time.perf_counter() - start) * 1e3)
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
    """A Markdown table: names and checks left-aligned, numbers right-aligned."""
    header = ["benchmark", "ours ms", "reference ms", "ratio", "ratio p25-p75", "check"]
    numeric = {1, 2, 3, 4}
    lines = [header] + [
        [
            row["name"],
            f"{row['ours_ms']:.3f}",
            f"{row['reference_ms']:.3f}",
            f"{row['ratio']:.2f}",
            f"{row['ratio_iqr'][0]:.2f}-{row['ratio_iqr'][1]:.2f}",
            row["check"],
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if i in numeric else "-" * w for i, w in enumerate(widths)]
    return "\n".join([render(lines[0]), render(rule), *(render(line) for line in lines[1:])])


def main(argv=None) -> list[dict]:
    """Run every benchmark and print the table; returns its rows."""
    args = parse_args(argv)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        # main() is also called in-process (tests); leave torch's thread pool as it was.
        torch.set_num_threads(previous_threads)


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
