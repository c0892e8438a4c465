"""Quantise a deployed float ONNX graph or .tflite file to int8, calibrated on test images.

    python tools/quantize.py CONFIG FILE.onnx --out FILE.int8.onnx --calib N
    python tools/quantize.py CONFIG FILE.tflite --out FILE.int8.tflite --calib N [--seed S]
        [--seed S] [--batch-size B] [--method minmax|percentile|entropy]
        [--activation-type uint8|int8] [--per-tensor] [--int8-last-layers]
        [--no-fold-pads] [--cfg-options KEY=VALUE ...]

``FILE.onnx`` takes uint8 RGB images (N, 3, H, W): the deployed graph of
``tools/export_onnx.py`` (normalisation inside). ``N`` calibration images are
drawn at random (``--seed``, without replacement) from the config's test
dataset - every entry's dataset of a multi-task config - and run through its
test pipeline (the resize); a progress bar counts them. The graph's input size
comes from its ``"mtvision"`` metadata (``input_size``), else from its input
shape; images the pipeline leaves at another size are resized to it (said in
one line). A graph of dynamic size (segmentation) is calibrated one image at a
time at each image's own size.

When the dataset has fewer than ``N`` images, one warning line names it and
both numbers, and all of them are used; none at all is an error. What is
quantised and the measured accuracy and speed: docs/quantization.md.

Checked before any calibration: ``--out`` (not a folder, its folder writable)
and ``FILE.onnx`` (an ONNX file with one uint8 image input, not already int8:
an int8 file of this tool is refused naming the float file it came from). The
int8 file replaces ``--out`` only after onnxruntime has opened it.

A ``.tflite`` (``tools/export.py --format tflite``) is quantised by ai-edge-quantizer
(``mtvision.export.litert_quantize``: static int8, per-channel weights, min/max
activation ranges from the same draw of test images, fed one at a time as uint8
(1, H, W, 3); its fully-connected and softmax layers stay float unless
``--int8-last-layers``); the other ONNX options (``--method`` ...) do not apply to it. Its metadata
(mtvision's, with a ``quantization`` record naming the float file, and MediaPipe's)
is kept; an int8 ``.tflite`` is refused naming the float file it came from.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.errors import ConfigError
from mtvision.export.deploy import deployed_format
from mtvision.export.litert_quantize import check_float_tflite, quantize_tflite
from mtvision.export.quantize import QuantizationSettings, graph_input, quantize_onnx
from mtvision.export.sample_images import calibration_batches, calibration_datasets, draw_samples
from mtvision.utils.atomic_files import check_output_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Quantise a deployed ONNX graph or .tflite to int8."
    )
    parser.add_argument("config", help="config file path (its test dataset calibrates)")
    parser.add_argument("onnx", help="float ONNX file with uint8 image input, or a float .tflite")
    parser.add_argument("--out", required=True, help="int8 ONNX file to write")
    parser.add_argument(
        "--calib", type=int, required=True, metavar="N", help="number of calibration images"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="calibration batch for fixed-size graphs (default 8; dynamic size: 1)",
    )
    parser.add_argument(
        "--method",
        choices=("minmax", "percentile", "entropy"),
        default=QuantizationSettings.method,
        help=f"activation-range calibration (default {QuantizationSettings.method})",
    )
    parser.add_argument(
        "--activation-type",
        choices=("uint8", "int8"),
        default=QuantizationSettings.activation_type,
        help=f"activation type (default {QuantizationSettings.activation_type})",
    )
    parser.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per tensor instead of per output channel (far less accurate "
        "on MobileNetV2's folded BatchNorms; docs/quantization.md)",
    )
    parser.add_argument(
        "--int8-last-layers",
        action="store_true",
        help="quantise the heads' last layers too (logits, box codes; default: float)",
    )
    parser.add_argument(
        "--no-fold-pads",
        action="store_true",
        help="keep TF-SAME Pad nodes apart from their convolutions (slower)",
    )
    add_cfg_options_argument(parser, "test_dataloader.dataset.data_root=/data/val")
    args = parser.parse_args(argv)
    if args.calib < 1:
        parser.error(f"--calib must be at least 1, got {args.calib}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def main(argv=None) -> dict:
    """Quantise as the command line says; returns the quantisation record."""

    args = parse_args(argv)
    check_output_file(args.out, "--out", example="model.int8.onnx")
    tflite = deployed_format(args.onnx) == ".tflite"
    if tflite:
        size, fixed_batch = tuple(check_float_tflite(args.onnx)["input_size"]), 1
    else:
        size, fixed_batch = graph_input(args.onnx)
    cfg = load_config(args.config, args.cfg_options)
    datasets = calibration_datasets(cfg)
    sizes = [len(dataset) for _, dataset in datasets]
    names = " + ".join(description for description, _ in datasets)
    if sum(sizes) == 0:
        raise ConfigError(f"{args.config}: the test dataset {names} has no images to calibrate on")
    if sum(sizes) < args.calib:
        print(
            f"warning: the test dataset {names} has {sum(sizes)} images, fewer than "
            f"--calib {args.calib}; calibrating on all {sum(sizes)}",
            file=sys.stderr,
        )
    picks = draw_samples(sizes, args.calib, args.seed)
    batch_size = fixed_batch or (args.batch_size if size is not None else 1)
    resized: list = []
    if tflite:
        with tqdm(total=len(picks), desc="calibration", unit="img", file=sys.stderr) as bar:
            record = quantize_tflite(
                args.onnx,
                args.out,
                calibration_batches([d for _, d in datasets], picks, size, 1, resized),
                on_image=bar.update,
                float_last_layers=not args.int8_last_layers,
            )
        _note_resized(resized, len(picks), size)
        print(
            f"wrote {args.out}: {record['scheme']} on {record['calibration_images']} "
            f"images, {record['weights']} weights"
        )
        return record
    settings = QuantizationSettings(
        method=args.method,
        activation_type=args.activation_type,
        per_channel=not args.per_tensor,
        float_last_layers=not args.int8_last_layers,
        fold_pads=not args.no_fold_pads,
    )
    with tqdm(total=len(picks), desc="calibration", unit="img", file=sys.stderr) as bar:
        record = quantize_onnx(
            args.onnx,
            args.out,
            calibration_batches([d for _, d in datasets], picks, size, batch_size, resized),
            settings,
            on_batch=bar.update,
        )
    _note_resized(resized, len(picks), size)
    print(
        f"wrote {args.out}: int8 QDQ, {record['method']} calibration on "
        f"{record['calibration_images']} images, {record['activation_type']} activations, "
        f"per-{'channel' if record['per_channel'] else 'tensor'} int8 weights; float: "
        f"{record['postprocessing_nodes']} post-processing "
        f"nodes and {len(record['float_nodes'])} last layers"
    )
    return record


def _note_resized(resized: list, picked: int, size) -> None:
    if resized:
        print(
            f"note: {len(resized)} of {picked} calibration images were resized from the "
            f"test pipeline's size (e.g. {resized[0][0]}x{resized[0][1]}) to the graph's "
            f"{size[0]}x{size[1]}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    run_cli(main)
