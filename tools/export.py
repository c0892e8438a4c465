"""Export a trained checkpoint for deployment, checked against torch in the target runtime.

    python tools/export.py CONFIG CHECKPOINT --out model.onnx|model.tflite|model.pte
        [--format onnx|tflite|executorch] [--input-size H W | --dynamic-size]
        [--topk 5] [--seg-logits] [--class-map] [--int8 --calib N]
        [--score-thr T] [--max-detections D] [--topk-candidates K]
        [--check-images 8] [--min-agreement 0.99] [--opset 17]
        [--cfg-options KEY=VALUE ...]
    python tools/export.py CONFIG CHECKPOINT --out raw.onnx --raw
        [--with-preprocess] [--static-batch] [--tolerance 1e-4] [--input-size H W]

``--format`` (default: from ``--out``'s suffix) picks the file, as ultralytics'
``format=``: ``onnx`` for the CPU runtimes (onnxruntime, OpenVINO), ``tflite``
(LiteRT, MediaPipe Tasks) and ``executorch`` (``.pte``, XNNPACK) for phones
(``docs/export.md``, ``docs/phones.md``). ``tools/export_onnx.py`` is this tool
with ``--format onnx``.

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

The phone formats take uint8 RGB (N, H, W, 3) images (as apps feed camera
frames), normalisation inside, and end where the phone runtimes have no op or
where MediaPipe Tasks does the rest itself: classification ``probabilities`` (all
classes), detection the raw SSD ``scores`` and ``box_regression`` with the anchors
and box coding in the metadata (decoding and NMS outside: MediaPipe's
``ObjectDetector``, or mtvision's runtimes with the torch head's own code),
segmentation the upsampled ``class_logits`` (N, H, W, K), channels last
(``--class-map``: the uint8 class map, argmax inside).

The file is written to a temporary file beside ``--out`` and checked there:
``--check-images`` test images (through the config's test pipeline; random
images when the test set cannot be read) run through torch and the file's runtime and
each head's agreement is printed (top-1 labels, matched boxes with IoU >= 0.99
and scores within 1e-4, equal pixels). Below ``--min-agreement`` (default 0.99)
is an error, and the rejected file is removed: ``--out`` keeps the previous
file byte for byte (``mtvision.export.export_deployed``). ``--out`` is checked
first, before the model is built (an existing folder, a parent that is a file or
not writable: one ``error:`` line).

``--raw``: the model's raw tensor forward (``<head>.<output>`` before
post-processing; ``--with-preprocess`` for uint8 input), checked by max abs
difference against torch on a random batch (``--tolerance``, relative), also
before it replaces ``--out`` (``mtvision.export.export_raw_checked``).
"""

from __future__ import annotations

import argparse
import math
import os

import torch.onnx

from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.model_source import ModelSource
from mtvision.errors import ExportError
from mtvision.export import export_deployed, export_raw_checked
from mtvision.export.sample_images import test_images
from mtvision.export.verify import EXPORT_FORMATS
from mtvision.utils.atomic_files import check_output_file

#: The opsets the deployed graph can be exported at: NonMaxSuppression and Resize need
#: 11; the newest is torch's TorchScript exporter's.
MIN_OPSET = 11
MAX_OPSET = getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)

#: --int8's default --min-agreement: the int8 file is compared with the float torch model,
#: which it follows closely but not exactly (a top-1 label or a few pixels may differ).

#: --out's suffix -> the format written when --format is not given.
FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".pte": "executorch"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export a checkpoint for deployment.")
    parser.add_argument("config", help="config file path")
    parser.add_argument("checkpoint", help="checkpoint file, e.g. work_dirs/NAME/last.pth")
    parser.add_argument("--out", required=True, help="file to write (.onnx, .tflite, .pte)")
    parser.add_argument(
        "--format",
        choices=list(EXPORT_FORMATS),
        help="onnx, tflite or executorch (default: from --out's suffix)",
    )
    parser.add_argument(
        "--class-map",
        action="store_true",
        help="phone formats: segmentation outputs the class map (argmax inside) instead of "
        "the per-pixel class logits",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="executorch: static int8 (PT2E, XNNPACK quantizer), calibrated on --calib images",
    )
    parser.add_argument(
        "--calib", type=int, default=100, help="--int8: calibration images (default 100)"
    )
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
        help="least agreement per head between torch and the file's runtime (default 0.99; "
        "with --int8 each task's int8 default: 0.9 of top-1 labels or pixels, detection not "
        "gated, as int8 moves every box)",
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
    if args.format is None:
        args.format = FORMAT_OF_SUFFIX.get(os.path.splitext(args.out)[1].lower())
        if args.format is None:
            parser.error(
                f"--out {args.out}: give a file ending in {', '.join(FORMAT_OF_SUFFIX)} or "
                "pass --format"
            )
    if args.format != "onnx" and (args.raw or args.dynamic_size or args.seg_logits):
        parser.error("--raw, --dynamic-size and --seg-logits go with --format onnx only")
    if args.class_map and args.format == "onnx":
        parser.error("--class-map goes with the phone formats (the ONNX graph has the mask)")
    if args.int8 and args.format != "executorch":
        parser.error(
            "--int8 goes with --format executorch; for .onnx and .tflite files run "
            "tools/quantize.py on the float file"
        )
    if args.calib < 1:
        parser.error(f"--calib must be at least 1, got {args.calib}")
    if args.input_size is not None and min(args.input_size) < 1:
        parser.error(f"--input-size must be positive, got {args.input_size}")
    if args.dynamic_size and (args.input_size is not None or args.raw):
        parser.error("--dynamic-size goes with neither --input-size nor --raw")
    if not args.raw and (args.with_preprocess or args.static_batch):
        parser.error("--with-preprocess and --static-batch go with --raw")
    if args.topk < 1 or args.check_images < 0 or (args.topk_candidates or 0) < 0:
        parser.error("--topk must be >= 1, --check-images and --topk-candidates >= 0")
    # What torch would otherwise refuse deep inside the trace (or, for NaN, accept silently).
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        parser.error(
            f"--opset must be between {MIN_OPSET} (NonMaxSuppression, Resize) and "
            f"{MAX_OPSET} (the newest this torch exports), got {args.opset}"
        )
    if args.max_detections is not None and args.max_detections < 1:
        parser.error(f"--max-detections must be at least 1, got {args.max_detections}")
    if args.score_thr is not None and not 0.0 <= args.score_thr <= 1.0:
        parser.error(f"--score-thr is a score in [0, 1], got {args.score_thr}")
    args.int8_default = args.min_agreement is None and args.int8
    if args.min_agreement is None:
        args.min_agreement = 0.99
    for name in ("min_agreement", "tolerance"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            parser.error(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
    return args


def export_raw(args, model) -> float:
    """The raw tensor forward, checked by max abs difference; returns it."""
    height, width = args.input_size or (224, 224)
    check = export_raw_checked(
        model,
        args.out,
        (height, width),
        with_preprocess=args.with_preprocess,
        static_batch=args.static_batch,
        opset=args.opset,
        tolerance=args.tolerance,
    )
    print(
        f"wrote {args.out}: input {'uint8' if args.with_preprocess else 'float32'} "
        f"(N, 3, {height}, {width}); onnxruntime vs torch on a random batch of "
        f"{check.batch}: max abs diff {check.max_diff:.3g} (max |output| {check.scale:.3g})"
    )
    return check.max_diff


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
    check_output_file(args.out, "--out", example=f"model.{args.out.rpartition('.')[2] or 'onnx'}")
    cfg = load_config(args.config, args.cfg_options)
    source = ModelSource(cfg, args.checkpoint)  # read once: weights and class names
    model = source.build_model(int8_emulation=False)  # exports quantise on their own
    if args.raw:
        return export_raw(args, model)

    _set_detection_options(model, args)
    if args.dynamic_size:
        input_size = None
    else:
        input_size = tuple(args.input_size) if args.input_size else source.input_size
        if input_size is None:
            raise ExportError(
                f"{args.config}: the test pipeline does not resize to one size; pass "
                "--input-size H W (or --dynamic-size for a segmentation model)"
            )
    images, origin = [], ""
    if args.check_images:
        images, origin = test_images(cfg, args.check_images, input_size)
    format_options = {}
    if args.format != "onnx":
        format_options["class_map"] = args.class_map
    if args.int8:
        calibration, calibration_origin = test_images(cfg, args.calib, input_size)
        format_options["calibration_images"] = calibration
        print(f"calibrating int8 on {len(calibration)} {calibration_origin}")
    agreements = export_deployed(
        model,
        args.out,
        input_size,
        classes=source.checkpoint_classes(model.head_tasks),
        topk=args.topk,
        seg_logits=args.seg_logits,
        opset=args.opset,
        source={"config": args.config, "checkpoint": args.checkpoint},
        check_images=images,
        min_agreement={name: task.int8_min_agreement for name, task in model.head_tasks.items()}
        if args.int8_default
        else args.min_agreement,
        format=args.format,
        format_options=format_options,
    )
    size_text = "any size" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    layout = "(N, 3, H, W)" if args.format == "onnx" else "(N, H, W, 3)"
    print(f"wrote {args.out}: uint8 RGB images {layout} at {size_text}")
    for name, head in agreements.items():
        difference = head.max_score_difference
        extra = "" if difference is None else f", max top-k score difference {difference:.2g}"
        print(
            f"  {name} ({head.task.name}): torch vs {args.format} file agreement "
            f"{head.agreement:.4f} on {head.images} {origin}" + extra
        )
    return {name: head.agreement for name, head in agreements.items()}


if __name__ == "__main__":
    run_cli(main)
