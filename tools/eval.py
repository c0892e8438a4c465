"""Evaluate a checkpoint on a config's test set (mmdet's tools/test.py conventions).

    python tools/eval.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR [--show-limit N] [--show-score-thr T]]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]
    python tools/eval.py CONFIG FILE.onnx [--backend onnxruntime|openvino] [--threads N] [...]
    python tools/eval.py --predictions RESULTS.json --ann ANNOTATIONS.json

Runs the test loop and prints one table of all metrics, one per line. A
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

``--backend onnxruntime`` (the default for a ``.onnx`` file; ``openvino`` runs the
same file in OpenVINO) evaluates a deployed
graph written by ``tools/export_onnx.py`` (or ``tools/quantize.py``) with the
same dataloader, pipeline and metrics: the model is replaced by
:class:`~mtvision.export.OnnxRuntimeModel`, which runs the file on the test
pipeline's uint8 images and maps its outputs back to the original images as the
heads do. The file's heads and class counts must match the config's model, and
its input size the test pipeline's (an error names both). A segmentation graph
without ``seg_logits`` gives class maps at the input size, resized to the
original by nearest neighbour.
"""

import argparse
import numbers
import os
import time

import mmengine
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger

from mtvision.data.label_space import dataloaders_with_model_classes
from mtvision.engine import build_runner, load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.config import default_work_dir
from mtvision.errors import ConfigError
from mtvision.evaluation.coco_metric import CocoMetric, load_coco_results
from mtvision.export import OnnxRuntimeModel
from mtvision.export.deploy_config import checkpoint_dataset_meta, deployed_dataset_meta
from mtvision.registry import METRICS
from mtvision.utils.atomic_files import check_output_dir, check_output_paths

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
    parser.add_argument(
        "--backend",
        choices=["torch", "onnxruntime", "openvino"],
        help="torch (a checkpoint), onnxruntime or openvino (a deployed .onnx file); "
        "default by suffix",
    )
    parser.add_argument(
        "--threads", type=int, help="onnxruntime/openvino: threads (default: its own choice)"
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
    if args.backend is None:
        args.backend = "onnxruntime" if args.checkpoint.endswith(".onnx") else "torch"
    if args.backend == "torch" and args.checkpoint.endswith(".onnx"):
        parser.error(f"{args.checkpoint} is an ONNX file: use --backend onnxruntime")
    if args.threads is not None and args.backend == "torch":
        parser.error("--threads goes with --backend onnxruntime or openvino")
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


def _as_list(evaluators) -> list:
    return list(evaluators) if isinstance(evaluators, list | tuple) else [evaluators]


def _is_multi_entry(evaluator) -> bool:
    """The multi-task loops' shape: ``{entry: {head: metric(s)}}`` (no ``type`` at the top)."""
    return isinstance(evaluator, dict) and "type" not in evaluator


def _metric_configs(evaluator) -> list:
    """Every metric config of a test evaluator, whatever its shape."""
    if isinstance(evaluator, list | tuple):
        return [config for item in evaluator for config in _metric_configs(item)]
    if isinstance(evaluator, dict):
        if "type" in evaluator:
            return [evaluator]
        return [config for item in evaluator.values() for config in _metric_configs(item)]
    return []


def _pickle_paths(out: str, entries: list[str]) -> dict[str, str]:
    """``--out`` for each evaluation entry: the file itself for one, ``stem.<entry>.pkl`` for several."""
    if len(entries) == 1:
        return {entries[0]: out}
    stem, suffix = os.path.splitext(out)
    return {entry: f"{stem}.{entry}{suffix}" for entry in entries}


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
    if out.endswith(PICKLE_SUFFIXES):
        if _is_multi_entry(cfg.test_evaluator):
            for entry, path in _pickle_paths(out, list(cfg.test_evaluator)).items():
                heads = cfg.test_evaluator[entry]
                head = next(iter(heads))  # DumpResults keeps every prediction of the entry
                heads[head] = [*_as_list(heads[head]), dict(type="DumpResults", out_file_path=path)]
        else:
            cfg.test_evaluator = [
                *_as_list(cfg.test_evaluator),
                dict(type="DumpResults", out_file_path=out),
            ]
        return False
    coco_metrics = [e for e in _metric_configs(cfg.test_evaluator) if _is_coco_metric(e)]
    if len(coco_metrics) > 1:
        raise ConfigError(
            f"--out {out}: the test evaluator has {len(coco_metrics)} CocoMetrics; "
            "set results_file on the one to write instead"
        )
    if not coco_metrics:
        return False
    coco_metrics[0]["results_file"] = out
    if not _is_multi_entry(cfg.test_evaluator):
        cfg.test_evaluator = _as_list(cfg.test_evaluator)
    return True


def format_metrics_table(metrics: dict) -> str:
    """One line per metric, sorted by name (so grouped by prefix), values to 4 decimals."""
    if not metrics:
        return "(no metrics)"

    def value_text(value) -> str:
        if isinstance(value, bool) or not isinstance(value, numbers.Number):
            return str(value)
        if isinstance(value, numbers.Integral):
            return str(int(value))
        return f"{float(value):.4f}"

    width = max(len("metric"), *(len(str(name)) for name in metrics))
    lines = [f"{'metric':<{width}}  value"]
    lines += [f"{name:<{width}}  {value_text(metrics[name])}" for name in sorted(metrics)]
    return "\n".join(lines)


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

    check_output_paths(files={"--out": args.out}, dirs={"--show-dir": args.show_dir})
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or default_work_dir(args.config)
    check_output_dir(cfg.work_dir, "--work-dir" if args.work_dir else "work_dir")
    # The test data takes the model's label space (class names, by name), so a split
    # lacking some classes keeps the model's labels (mtvision.data.label_space).
    model_meta = (
        checkpoint_dataset_meta(args.checkpoint)
        if args.backend == "torch"
        else deployed_dataset_meta(args.checkpoint)
    )
    cfg.test_dataloader = dataloaders_with_model_classes(
        cfg.test_dataloader, cfg.get("test_evaluator"), model_meta
    )
    if args.backend != "torch":
        cfg.model = dict(
            type=OnnxRuntimeModel.__name__,
            onnx_file=args.checkpoint,
            model=cfg.model,
            threads=args.threads,
            config_source=args.config,
            runtime=args.backend,
        )
        cfg.load_from, cfg.resume = None, False
    else:
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
        print(format_metrics_table(metrics))
        if args.out is not None and args.out.endswith(".json") and not writes_coco_results:
            mmengine.dump(metrics, args.out, indent=2, sort_keys=True)
    return metrics


if __name__ == "__main__":
    run_cli(main)
