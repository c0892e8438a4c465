"""Evaluate a checkpoint on a config's test set (mmdet's tools/test.py conventions).

    python tools/eval.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR [--show-limit N] [--show-score-thr T]]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]
    python tools/eval.py CONFIG FILE.onnx|FILE.tflite|FILE.pte [--backend RUNTIME] [--threads N]
    python tools/eval.py --predictions RESULTS.json --ann ANNOTATIONS.json

Runs the test loop (:func:`mtvision.apis.evaluation.evaluate`, the same from Python)
and prints one table of all metrics, one per line. A
multi-task config (``test_cfg=dict(type="MultiTaskTestLoop")``, see
docs/multitask.md) evaluates every head on its own test data and the table
holds them all (``classification/top1``, ``coco/bbox_mAP``, ``voc/mIoU``, ...).

``--out``: with a ``CocoMetric`` in the test evaluator, ``--out results.json``
writes the predictions as a COCO results file (``[{"image_id", "category_id",
"bbox": [x, y, w, h], "score"}, ...]``, the format the COCO evaluation server
takes); with any other evaluator ``--out metrics.json`` writes the metrics as
JSON. ``--out predictions.pkl`` dumps the raw predictions (mmengine's
``DumpResults``; with several evaluation entries, one file per entry:
``predictions.<entry>.pkl``).

``--show-dir DIR`` draws each prediction on its original image into DIR
(detections as ``<image>.png``, segmentation as a VOC-palette ``<image>.png``
plus ``<image>_overlay.png``, a multi-task prediction's boxes, mask and top-5
classes on one picture; with several evaluation entries, one subfolder each;
see ``ShowPredictionsHook``).

``--predictions RESULTS.json --ann ANNOTATIONS.json`` evaluates an existing
COCO results file against a COCO annotation file, without a config or model:
every image of the annotation file counts (an image without results has its
objects missed). It prints the 12 COCO box statistics and a per-category table.

The checkpoint must fit the model exactly. The test data is labelled in the
model's label space: the class names the checkpoint (``meta["dataset_meta"]``)
or the deployed file's metadata records. An ImageNet split lacking some class
folders, or a COCO json lacking some categories, keeps the model's label of
each name (the missing classes are logged as empty); data with a class the
model does not have is refused in one line naming both lists
(:mod:`mtvision.data.label_space`).

An exported file (``tools/export.py``, ``tools/quantize.py``) is evaluated in its
runtime (default by suffix: onnxruntime for ``.onnx``, ``openvino`` the same file in
OpenVINO; ``litert`` for ``.tflite``; ``executorch`` for ``.pte``) with the
same dataloader, pipeline and metrics: the model is replaced by
:class:`~mtvision.export.DeployedModel`, which runs the file on the test
pipeline's uint8 images and maps its outputs back to the original images as the
heads do. The file's heads and class counts must match the config's model, and
its input size the test pipeline's (an error names both). A segmentation graph
without ``seg_logits`` gives class maps at the input size, resized to the
original by nearest neighbour.
"""

import argparse
import os

import mmengine
from mmengine.dist import is_main_process

from mtvision.apis.evaluation import (
    PICKLE_SUFFIXES,
    evaluate,
    evaluate_results_file,
    format_metrics_table,
)
from mtvision.apis.inferencer import BACKENDS
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.runner import close_process_group
from mtvision.export.runtimes import default_runtime, deployed_suffixes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Evaluate a checkpoint on the test set, or a COCO results file.",
        epilog="Without a model: %(prog)s --predictions results.json --ann annotations.json",
    )
    parser.add_argument("config", nargs="?", help="config file path")
    parser.add_argument(
        "checkpoint", nargs="?", help="checkpoint file, e.g. work_dirs/NAME/last.pth"
    )
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="torch (a checkpoint) or a runtime of the exported file (onnxruntime, openvino: "
        ".onnx; litert: .tflite; executorch: .pte); default by suffix",
    )
    parser.add_argument(
        "--threads", type=int, help="runtimes: threads (default: the runtime's own choice)"
    )
    parser.add_argument("--work-dir", help="where logs go")
    parser.add_argument(
        "--out",
        help="with a CocoMetric test evaluator: write the COCO results (.json); otherwise "
        "write the metrics (.json); .pkl/.pickle dumps the raw predictions",
    )
    parser.add_argument(
        "--show-dir", help="draw the predictions on the original images into this folder"
    )
    parser.add_argument(
        "--show-limit",
        type=int,
        metavar="N",
        help="with --show-dir: draw only the first N test images (default: all)",
    )
    parser.add_argument(
        "--show-score-thr",
        type=float,
        default=0.3,
        metavar="T",
        help="with --show-dir: draw detections scoring at least T (default: 0.3)",
    )
    parser.add_argument(
        "--predictions",
        metavar="RESULTS.json",
        help="evaluate this COCO results file (needs --ann; no config or checkpoint)",
    )
    parser.add_argument(
        "--ann", metavar="ANNOTATIONS.json", help="COCO annotation file for --predictions"
    )
    add_cfg_options_argument(parser, "test_dataloader.batch_size=8")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    args = parser.parse_args(argv)

    if args.predictions is not None or args.ann is not None:
        if args.predictions is None or args.ann is None:
            parser.error("--predictions and --ann go together")
        model_options = {
            "CONFIG": args.config,
            "CHECKPOINT": args.checkpoint,
            "--out": args.out,
            "--show-dir": args.show_dir,
            "--work-dir": args.work_dir,
            "--cfg-options": args.cfg_options,
        }
        given = [name for name, value in model_options.items() if value is not None]
        if given:
            parser.error(
                f"--predictions/--ann evaluate a results file without a model; "
                f"drop {', '.join(given)}"
            )
        return args
    if args.config is None or args.checkpoint is None:
        parser.error("CONFIG and CHECKPOINT are required (or use --predictions with --ann)")
    suffix = os.path.splitext(args.checkpoint)[1].lower()
    deployed = suffix in deployed_suffixes()
    if args.backend is None:
        args.backend = default_runtime(args.checkpoint) if deployed else "torch"
    if args.backend == "torch" and deployed:
        parser.error(
            f"{args.checkpoint} is an exported {suffix} file: use --backend "
            f"{default_runtime(args.checkpoint)} (or leave --backend out)"
        )
    if args.threads is not None and args.backend == "torch":
        parser.error("--threads goes with the runtimes of exported files, not --backend torch")
    if args.backend != "torch" and args.launcher != "none":
        parser.error(f"--backend {args.backend} runs in one process (--launcher none)")
    if args.out is not None and not args.out.endswith((".json", *PICKLE_SUFFIXES)):
        parser.error(
            f"--out {args.out}: use a .json (COCO results or metrics) or .pkl (predictions) file"
        )
    if args.show_dir is None and args.show_limit is not None:
        parser.error("--show-limit needs --show-dir")
    if args.show_limit is not None and args.show_limit < 0:
        parser.error(f"--show-limit must be >= 0, got {args.show_limit}")
    return args


def main(argv=None) -> dict:
    """Evaluate as the command line says; returns the metrics dict."""
    args = parse_args(argv)
    if args.predictions is not None:
        metrics = evaluate_results_file(args.predictions, args.ann)
        print(mmengine.dump(metrics, file_format="json", indent=2, sort_keys=True))
        return metrics

    metrics = evaluate(
        args.config,
        args.checkpoint,
        backend=args.backend,
        threads=args.threads,
        cfg_options=args.cfg_options,
        work_dir=args.work_dir,
        launcher=args.launcher,
        out=args.out,
        show_dir=args.show_dir,
        show_limit=args.show_limit,
        show_score_thr=args.show_score_thr,
    )
    if is_main_process():
        print(format_metrics_table(metrics))
    close_process_group()
    return metrics


if __name__ == "__main__":
    run_cli(main)
