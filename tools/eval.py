"""Evaluate a checkpoint on a config's test set (mmdet's tools/test.py conventions).

    python tools/eval.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR [--show-limit N] [--show-score-thr T]]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]
    python tools/eval.py --predictions RESULTS.json --ann ANNOTATIONS.json

Runs the test loop and prints the metrics as JSON.

``--out``: with a ``CocoMetric`` test evaluator, ``--out results.json`` writes
the predictions as a COCO results file (``[{"image_id", "category_id", "bbox":
[x, y, w, h], "score"}, ...]``, the format the COCO evaluation server takes);
with any other evaluator ``--out metrics.json`` writes the metrics.
``--out predictions.pkl`` dumps the raw predictions (mmengine's ``DumpResults``).

``--show-dir DIR`` draws each prediction on its original image into DIR
(detections as ``<image>.png``, segmentation as a VOC-palette ``<image>.png``
plus ``<image>_overlay.png``; see ``ShowPredictionsHook``).

``--predictions RESULTS.json --ann ANNOTATIONS.json`` evaluates an existing
COCO results file against a COCO annotation file, without a config or model:
every image of the annotation file counts (an image without results has its
objects missed). It prints the 12 COCO box statistics and a per-category table.

The checkpoint must fit the model exactly.
"""

import argparse
import time

import mmengine
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger

from mtvision.engine import build_runner, load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.config import default_work_dir
from mtvision.errors import ConfigError
from mtvision.evaluation.coco_metric import CocoMetric, load_coco_results
from mtvision.registry import METRICS

PICKLE_SUFFIXES = (".pkl", ".pickle")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Evaluate a checkpoint on the test set, or a COCO results file.",
        epilog="Without a model: %(prog)s --predictions results.json --ann annotations.json",
    )
    parser.add_argument("config", nargs="?", help="config file path")
    parser.add_argument(
        "checkpoint", nargs="?", help="checkpoint file, e.g. work_dirs/NAME/last.pth"
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
    if args.out is not None and not args.out.endswith((".json", *PICKLE_SUFFIXES)):
        parser.error(
            f"--out {args.out}: use a .json (COCO results or metrics) or .pkl (predictions) file"
        )
    if args.show_dir is None and args.show_limit is not None:
        parser.error("--show-limit needs --show-dir")
    if args.show_limit is not None and args.show_limit < 0:
        parser.error(f"--show-limit must be >= 0, got {args.show_limit}")
    return args


def _as_list(evaluators) -> list:
    return list(evaluators) if isinstance(evaluators, list | tuple) else [evaluators]


def _is_coco_metric(evaluator) -> bool:
    metric_type = evaluator.get("type") if isinstance(evaluator, dict) else None
    if isinstance(metric_type, str):
        metric_type = METRICS.get(metric_type)
    return isinstance(metric_type, type) and issubclass(metric_type, CocoMetric)


def _route_out(cfg, out: str) -> bool:
    """Make the test evaluators write ``--out``; True when it gets COCO results.

    ``.pkl``: mmengine's ``DumpResults`` is added. ``.json`` with a CocoMetric:
    the metric writes its COCO results there. ``.json`` otherwise: nothing here
    (``main`` writes the metrics).
    """
    evaluators = _as_list(cfg.test_evaluator)
    if out.endswith(PICKLE_SUFFIXES):
        cfg.test_evaluator = [*evaluators, dict(type="DumpResults", out_file_path=out)]
        return False
    coco_metrics = [e for e in evaluators if _is_coco_metric(e)]
    if len(coco_metrics) > 1:
        raise ConfigError(
            f"--out {out}: the test evaluator has {len(coco_metrics)} CocoMetrics; "
            "set results_file on the one to write instead"
        )
    if not coco_metrics:
        return False
    coco_metrics[0]["results_file"] = out
    cfg.test_evaluator = evaluators
    return True


def evaluate_results_file(results_file: str, ann_file: str) -> dict:
    """The COCO box metrics of a results file (keys ``coco/bbox_mAP`` ...)."""
    # The per-category table goes through mmengine's "current" logger, as under
    # a Runner; a new instance becomes the current one.
    MMLogger.get_instance(f"eval_predictions_{time.time_ns()}", log_level="INFO")
    metric = CocoMetric(ann_file=ann_file)
    metrics = metric.evaluate_results(load_coco_results(results_file), results_source=results_file)
    return {f"{metric.prefix}/{name}": value for name, value in metrics.items()}


def main(argv=None) -> dict:
    """Evaluate as the command line says; returns the metrics dict."""
    args = parse_args(argv)
    if args.predictions is not None:
        metrics = evaluate_results_file(args.predictions, args.ann)
        print(mmengine.dump(metrics, file_format="json", indent=2, sort_keys=True))
        return metrics

    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or default_work_dir(args.config)
    cfg.load_from, cfg.resume = args.checkpoint, False
    writes_coco_results = args.out is not None and _route_out(cfg, args.out)
    if args.show_dir is not None:
        show_hook = dict(
            type="ShowPredictionsHook",
            out_dir=args.show_dir,
            max_images=args.show_limit,
            score_threshold=args.show_score_thr,
        )
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), show_hook]
    runner = build_runner(cfg)
    metrics = runner.test()
    if is_main_process():
        # mmengine's json handler also converts numpy numbers.
        print(mmengine.dump(metrics, file_format="json", indent=2, sort_keys=True))
        if args.out is not None and args.out.endswith(".json") and not writes_coco_results:
            mmengine.dump(metrics, args.out, indent=2, sort_keys=True)
    return metrics


if __name__ == "__main__":
    run_cli(main)
