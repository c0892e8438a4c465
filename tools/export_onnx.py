"""Export a trained checkpoint to ONNX for deployment and check it against torch with onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx
        [--input-size H W | --dynamic-size] [--topk 5] [--seg-logits]
        [--score-thr T] [--max-detections D] [--topk-candidates K]
        [--check-images 8] [--opset 17]
        [--cfg-options KEY=VALUE ...]
    python tools/export_onnx.py CONFIG CHECKPOINT --out raw.onnx --raw
        [--with-preprocess] [--static-batch] [--tolerance 1e-4] [--input-size H W]

Default: the deployed graph (``mtvision.export.export_deploy_onnx``): input
``images``, uint8 RGB (N, 3, H, W) at the config's test input size (its test
pipeline's ``Resize``/``CenterCrop``; ``--input-size`` overrides), mean/std
inside; outputs the final results of every head: classification ``scores`` /
``labels`` (top-k), detection ``boxes`` (xyxy, input pixels), ``scores``,
``labels``, ``num_detections`` (decoding, score threshold, per-class top-k and
class-aware NMS inside, as ONNX NonMaxSuppression), segmentation ``mask``
(uint8 class map at the input size; ``--seg-logits`` adds the logits). A model
with several heads names them ``<head>.<field>``. ``--dynamic-size`` (only for
a segmentation-only model) leaves height and width free. The metadata records
input size, mean/std, heads, classes (from the checkpoint) and the sources.

After writing, ``--check-images`` test images (through the config's test
pipeline; random images when the test set cannot be read) run through torch
and onnxruntime and each head's agreement is printed (top-1 labels, matched
boxes with IoU >= 0.99 and scores within 1e-4, equal pixels). Below
``--min-agreement`` (default 0.99) is an error.

``--raw``: the model's raw tensor forward (``<head>.<output>`` before
post-processing; ``--with-preprocess`` for uint8 input), checked by max abs
difference against torch on a random batch (``--tolerance``, relative).
"""

from __future__ import annotations

import argparse

import torch

from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.model_loading import build_model_from_checkpoint
from mtvision.errors import ExportError
from mtvision.export import (
    DeployModel,
    OnnxRuntimeModel,
    Uint8Input,
    check_onnx_matches,
    export_deploy_onnx,
    export_onnx,
    flatten_outputs,
)
from mtvision.export.deploy_config import checkpoint_classes, test_input_size
from mtvision.export.sample_images import test_images


class ExportMismatchError(ExportError):
    """onnxruntime's outputs differ from torch's by more than allowed."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export a checkpoint to ONNX.")
    parser.add_argument("config", help="config file path")
    parser.add_argument("checkpoint", help="checkpoint file, e.g. work_dirs/NAME/last.pth")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input height and width (default: the config's test pipeline size)",
    )
    parser.add_argument(
        "--dynamic-size",
        action="store_true",
        help="any height and width (segmentation-only models)",
    )
    parser.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument(
        "--seg-logits", action="store_true", help="also output the upsampled logits"
    )
    parser.add_argument(
        "--score-thr", type=float, help="detection score threshold (default: the config's)"
    )
    parser.add_argument(
        "--max-detections", type=int, help="detections per image (default: the config's)"
    )
    parser.add_argument(
        "--topk-candidates",
        type=int,
        help="detection candidates per class before NMS (default: the config's; 0: no cap, "
        "faster when --score-thr already leaves few)",
    )
    parser.add_argument(
        "--check-images", type=int, default=8, help="test images to compare torch and ONNX on"
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="least agreement per head between torch and onnxruntime (default 0.99)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument("--raw", action="store_true", help="export the raw tensor forward")
    parser.add_argument(
        "--with-preprocess",
        action="store_true",
        help="--raw: take uint8 RGB input and normalise inside the graph",
    )
    parser.add_argument(
        "--static-batch", action="store_true", help="--raw: fix the batch size to 1"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="--raw: largest |onnx - torch| relative to max |torch output| (default 1e-4)",
    )
    add_cfg_options_argument(parser, "model.heads.classification.num_classes=6")
    args = parser.parse_args(argv)
    if args.input_size is not None and min(args.input_size) < 1:
        parser.error(f"--input-size must be positive, got {args.input_size}")
    if args.dynamic_size and (args.input_size is not None or args.raw):
        parser.error("--dynamic-size goes with neither --input-size nor --raw")
    if not args.raw and (args.with_preprocess or args.static_batch):
        parser.error("--with-preprocess and --static-batch go with --raw")
    if args.topk < 1 or args.check_images < 0 or (args.topk_candidates or 0) < 0:
        parser.error("--topk must be >= 1, --check-images and --topk-candidates >= 0")
    return args


def export_raw(args, model) -> float:
    """The raw tensor forward, checked by max abs difference; returns it."""
    height, width = args.input_size or (224, 224)
    if args.with_preprocess:
        model = Uint8Input.from_data_preprocessor(model).eval()
        input_dtype = torch.uint8
        check_input = torch.randint(0, 256, (2, 3, height, width), dtype=torch.uint8)
    else:
        input_dtype = torch.float32
        check_input = torch.randn(2, 3, height, width)
    export_onnx(
        model,
        args.out,
        input_shape=(1, 3, height, width),
        opset=args.opset,
        dynamic_batch=not args.static_batch,
        input_dtype=input_dtype,
    )
    if args.static_batch:
        check_input = check_input[:1]
    max_diff = check_onnx_matches(model, args.out, check_input)
    with torch.no_grad():
        outputs = model(check_input)
    scale = max(float(t.abs().max()) for t in flatten_outputs(outputs)[1])
    print(
        f"wrote {args.out}: input {'uint8' if args.with_preprocess else 'float32'} "
        f"(N, 3, {height}, {width}); onnxruntime vs torch on a random batch of "
        f"{len(check_input)}: max abs diff {max_diff:.3g} (max |output| {scale:.3g})"
    )
    if max_diff > args.tolerance * max(scale, 1e-12):
        raise ExportMismatchError(
            f"{args.out}: onnxruntime differs from torch by {max_diff:.3g}, more than "
            f"{args.tolerance:g} x max |output| {scale:.3g}"
        )
    return max_diff


def _set_detection_options(model, args) -> None:
    """The options given, in every head whose ``test_cfg`` has the key (the detectors)."""
    options = {}
    if args.score_thr is not None:
        options["score_threshold"] = float(args.score_thr)
    if args.max_detections is not None:
        options["max_detections"] = int(args.max_detections)
    if args.topk_candidates is not None:
        options["topk_candidates"] = args.topk_candidates or None
    for head in model.heads.values():
        test_cfg = getattr(head, "test_cfg", None)
        if isinstance(test_cfg, dict):
            test_cfg.update({k: v for k, v in options.items() if k in test_cfg})


def main(argv=None):
    """Export and verify as the command line says. Returns the raw export's max abs
    difference with ``--raw``, else ``{head: agreement}``."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model = build_model_from_checkpoint(cfg, args.checkpoint)
    if args.raw:
        return export_raw(args, model)

    _set_detection_options(model, args)
    if args.dynamic_size:
        input_size = None
    else:
        input_size = tuple(args.input_size) if args.input_size else test_input_size(cfg)
        if input_size is None:
            raise ExportError(
                f"{args.config}: the test pipeline does not resize to one size; pass "
                "--input-size H W (or --dynamic-size for a segmentation model)"
            )
    classes = checkpoint_classes(args.checkpoint, model.heads)
    export_deploy_onnx(
        model,
        args.out,
        input_size,
        classes=classes,
        topk=args.topk,
        seg_logits=args.seg_logits,
        opset=args.opset,
        source={"config": args.config, "checkpoint": args.checkpoint},
    )
    size_text = "any size" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    print(f"wrote {args.out}: uint8 RGB images (N, 3, H, W) at {size_text}")
    if args.check_images == 0:
        return {}

    images, origin = test_images(cfg, args.check_images, input_size)
    deployed = OnnxRuntimeModel(args.out)
    torch_model = DeployModel(model, topk=args.topk, seg_logits=args.seg_logits).eval()
    agreements = {name: [] for name in deployed.heads}
    for image in images:
        batch = image.unsqueeze(0)
        with torch.no_grad():
            expected = torch_model.outputs(batch)
        actual = deployed.run(batch)
        for name, task in deployed.head_tasks.items():
            agreements[name].append(
                (
                    task.agreement(expected[name], actual[name]),
                    task.max_score_difference(expected[name], actual[name]),
                )
            )
    result = {}
    for name, values in agreements.items():
        agreement = sum(v[0] for v in values) / len(values)
        result[name] = agreement
        task = deployed.head_tasks[name]
        differences = [v[1] for v in values if v[1] is not None]
        extra = f", max top-k score difference {max(differences):.2g}" if differences else ""
        print(
            f"  {name} ({task.name}): torch vs onnxruntime agreement {agreement:.4f} on "
            f"{len(values)} {origin}" + extra
        )
    low = {name: value for name, value in result.items() if value < args.min_agreement}
    if low:
        raise ExportMismatchError(
            f"{args.out}: onnxruntime agrees with torch on {low}, below --min-agreement "
            f"{args.min_agreement}"
        )
    return result


if __name__ == "__main__":
    run_cli(main)
