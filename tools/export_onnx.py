"""Export a trained checkpoint to ONNX and check it against torch with onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx
        [--input-size H W] [--opset 17] [--with-preprocess] [--static-batch]
        [--cfg-options KEY=VALUE ...]

The graph is the model's tensor forward: the raw outputs of every head, named
``<head>.<output>`` (a classifier gives ``classification.cls_logits``, (N, K);
detection and segmentation give their raw scores and box codes / low-resolution
logits, without post-processing). Its input ``input`` is (N, 3, H, W), the
batch axis dynamic unless ``--static-batch``:

- default: float32, RGB, already normalised with the ImageNet mean/std of the
  config's data preprocessor (``(pixel - mean) / std`` in 0-255 units), as the
  model sees it in training;
- ``--with-preprocess``: uint8 RGB pixels; the cast and the normalisation are
  part of the graph.

Resizing is never in the graph: feed images at ``--input-size``. After writing
the file, a random batch of two goes through torch and onnxruntime and the
largest absolute difference is printed; a difference above ``--tolerance``
(relative to the largest output magnitude) is an error.
"""

from __future__ import annotations

import argparse

import torch

from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.model_loading import build_model_from_checkpoint
from mtvision.export import Uint8Input, check_onnx_matches, export_onnx, flatten_outputs


class ExportMismatchError(RuntimeError):
    """onnxruntime's outputs differ from torch's by more than the tolerance."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export a checkpoint to ONNX.")
    parser.add_argument("config", help="config file path")
    parser.add_argument("checkpoint", help="checkpoint file, e.g. work_dirs/NAME/last.pth")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        default=(224, 224),
        metavar=("H", "W"),
        help="input height and width (default 224 224; the demo config trains at 64 64)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument(
        "--with-preprocess",
        action="store_true",
        help="take uint8 RGB input and normalise inside the graph",
    )
    parser.add_argument(
        "--static-batch", action="store_true", help="fix the batch size to 1 in the graph"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest allowed |onnx - torch| relative to max |torch output| (default 1e-4)",
    )
    add_cfg_options_argument(parser, "model.heads.classification.num_classes=6")
    args = parser.parse_args(argv)
    if min(args.input_size) < 1:
        parser.error(f"--input-size must be positive, got {args.input_size}")
    return args


def main(argv=None) -> float:
    """Export and verify as the command line says; returns the max abs difference."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model = build_model_from_checkpoint(cfg, args.checkpoint)
    height, width = args.input_size
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


if __name__ == "__main__":
    run_cli(main)
