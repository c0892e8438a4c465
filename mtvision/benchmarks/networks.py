"""Network comparisons: mtvision's networks against the torchvision models they replace.

By default on CPU, batch 1, eval mode, ``torch.inference_mode``:

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
   ``multitask_size`` image (320x320), channels-last, raw head outputs
   (``mode="tensor"``, no post-processing); the output shapes are printed;
4. ``TopKAccuracy`` (process + compute_metrics) against ``torch.topk`` on the
   same scores (the accuracies are checked to agree).

With ``device="cuda"`` the two networks run on the GPU (each timed run ends with
``torch.cuda.synchronize``) and the onnxruntime comparison is left out (the project
installs onnxruntime's CPU build). ``batch=N`` times batches of N images; ``train``
adds a training step (forward, cross-entropy, backward, SGD with momentum; dropout
off in both so that their first losses can be compared) of ours against
torchvision's. After the table, images per second of each side of every network
comparison. A ratio is ours / reference (:mod:`mtvision.benchmarks.timing`); below 1
means mtvision (or onnxruntime) is faster.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
import torchvision
from torch import nn

import mtvision
from mtvision.benchmarks.options import BenchmarkOptions
from mtvision.benchmarks.report import device_description, library_versions, print_network_rows
from mtvision.benchmarks.timing import make_row, on_device, time_pair
from mtvision.evaluation.topk_accuracy import TopKAccuracy
from mtvision.export import check_onnx_matches, export_onnx, onnx_session
from mtvision.tasks import CLASSIFICATION, heads_of_task
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


def run_networks(options: BenchmarkOptions, threads: int) -> list[dict]:
    """All network comparisons at ``threads`` intra-op threads (torch's pool must already
    have them); prints the table and returns its rows (:func:`make_row` dicts)."""
    print(
        f"{library_versions()}, {device_description(options.device)}; "
        f"threads {threads}, batch {options.batch}, {options.size}x{options.size}, "
        f"{options.runs} paired runs after {options.warmup} warm-up"
    )
    reference = torchvision.models.mobilenet_v2(weights=None, num_classes=NUM_CLASSES)
    reference = randomize_batch_norms_(reference, seed=0).eval()
    ours = mtvision.create_model("mobilenet_v2", num_classes=NUM_CLASSES).eval()
    ours.load_torchvision_state_dict(reference.state_dict())
    rows = bench_eager(options, ours, reference)
    if options.device == "cpu":
        with tempfile.TemporaryDirectory() as work_dir:
            rows.append(bench_onnxruntime(options, threads, ours, Path(work_dir)))
    if options.train:
        rows.append(bench_train(options, ours, reference))
    rows.append(bench_multitask(options))
    rows.append(bench_topk(options))
    print_network_rows(rows)
    return rows


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, K) logits of mtvision's classifier (a MultiTaskModel: its classification head,
    found by its task) or of torchvision's model."""
    outputs = model(x)
    if not isinstance(outputs, dict):
        return outputs
    (head,) = heads_of_task(model.head_tasks, CLASSIFICATION)
    return outputs[head]["cls_logits"]


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> str:
    return (
        f"max abs diff {float((a - b).abs().max()):.2g} of max abs logit {float(b.abs().max()):.2g}"
    )


def _batch_suffix(options: BenchmarkOptions) -> str:
    """How a row's name says where and how many at a time, when not the CPU default of 1."""
    parts = [options.device] if options.device != "cpu" else []
    parts += [f"batch {options.batch}"] if options.batch != 1 else []
    return f" ({', '.join(parts)})" if parts else ""


def bench_eager(options: BenchmarkOptions, ours: nn.Module, reference: nn.Module) -> list[dict]:
    """mtvision vs torchvision forward latency, contiguous and channels-last."""
    rows = []
    device = torch.device(options.device)
    size = options.size
    image = torch.randn(
        options.batch, 3, size, size, generator=torch.Generator().manual_seed(0)
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
                options.runs,
                options.warmup,
            )
        name = f"mtvision vs torchvision eager, {layout}{_batch_suffix(options)}"
        rows.append(make_row(name, *times, check, images=options.batch))
    return rows


def bench_train(options: BenchmarkOptions, ours: nn.Module, reference: nn.Module) -> dict:
    """One SGD training step of mtvision's classifier vs torchvision's, channels-last."""
    device = torch.device(options.device)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(options.batch, 3, options.size, options.size, generator=generator)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (options.batch,), generator=generator).to(device)
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
    times = time_pair(*steps, options.runs, options.warmup)
    check = f"first-step loss {first_losses[0]:.6g} vs {first_losses[1]:.6g}"
    name = f"mtvision vs torchvision training step, channels_last{_batch_suffix(options)}"
    return make_row(name, *times, check, images=options.batch)


def _output_shapes(outputs: dict[str, dict[str, torch.Tensor]]) -> str:
    """``"classification 1000, detection 2034x81+2034x4, ..."`` (per image) of raw head outputs."""
    return ", ".join(
        f"{head} " + "+".join("x".join(map(str, t.shape[1:])) for t in head_outputs.values())
        for head, head_outputs in outputs.items()
    )


def bench_multitask(options: BenchmarkOptions) -> dict:
    """One multi-task forward vs the three single-task models one after another, channels-last."""
    device = torch.device(options.device)
    size = options.multitask_size
    stride = (
        {}
        if options.multitask_output_stride is None
        else {"output_stride": options.multitask_output_stride}
    )
    ours = mtvision.create_model("mobilenet_v2_multitask", num_classes=MULTITASK_CLASSES, **stride)
    singles = [
        mtvision.create_model(SINGLE_TASK_MODELS[head], num_classes=classes)
        for head, classes in MULTITASK_CLASSES.items()
    ]
    ours = ours.eval().to(device, memory_format=torch.channels_last)
    singles = [m.eval().to(device, memory_format=torch.channels_last) for m in singles]
    x = torch.randn(options.batch, 3, size, size, generator=torch.Generator().manual_seed(4))
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
            options.runs,
            options.warmup,
        )
    name = (
        f"multi-task (OS {ours.backbone.output_stride}) vs classifier + SSDLite + DeepLabv3, "
        f"{size}x{size}, channels_last"
        f"{_batch_suffix(options)}"
    )
    return make_row(name, *times, check, images=options.batch)


def bench_onnxruntime(
    options: BenchmarkOptions, threads: int, ours: nn.Module, work_dir: Path
) -> dict:
    """onnxruntime on the exported mtvision model vs the same model in torch eager mode."""
    batch, size = options.batch, options.size
    path = export_onnx(ours, work_dir / "mobilenet_v2.onnx", (1, 3, size, size))
    session = onnx_session(path, threads=threads)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    feed = {session.get_inputs()[0].name: x.numpy()}
    max_diff = check_onnx_matches(ours, path, x)
    with torch.inference_mode():
        scale = float(_logits(ours, x).abs().max())
        times = time_pair(
            lambda: session.run(None, feed), lambda: ours(x), options.runs, options.warmup
        )
    check = f"max abs diff {max_diff:.2g} of max abs logit {scale:.2g}"
    suffix = f", batch {batch}" if batch != 1 else ""
    name = f"onnxruntime vs torch eager (mtvision, contiguous{suffix})"
    return make_row(name, *times, check, images=batch)


def bench_topk(options: BenchmarkOptions) -> dict:
    """TopKAccuracy over N predictions vs one vectorised torch.topk."""
    count = options.topk_images
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(count, NUM_CLASSES, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    # Lift the true class so that the accuracies are far from 0 and the check means something.
    scores[torch.arange(count), labels] += 3.0
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
    times = time_pair(ours, reference, min(options.runs, MAX_TOPK_RUNS), warmup=1)
    accuracies = ", ".join(f"{key} {value:.4f}" for key, value in expected.items())
    return make_row(
        f"TopKAccuracy vs torch.topk ({count} x {NUM_CLASSES} scores)",
        *times,
        f"same accuracies ({accuracies})",
    )
