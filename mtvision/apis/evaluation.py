"""Evaluate a checkpoint or a deployed file on a config's test set, or a COCO results
file against its annotations: what ``tools/eval.py`` does, as functions.

:func:`evaluate` runs mmengine's test loop (a multi-task config's
``MultiTaskTestLoop`` scores every head on its own data) and returns every metric:

- the test data takes the model's label space (the class names the checkpoint's
  ``meta["dataset_meta"]`` or the deployed file's metadata records,
  :mod:`mtvision.data.label_space`); the checkpoint is read once
  (:class:`~mtvision.engine.model_source.ModelSource`), for its class names and its
  weights;
- a deployed file (backend ``"onnxruntime"`` / ``"openvino"``) replaces the model by
  :class:`~mtvision.export.DeployedModel` (same dataloader, pipeline and metrics);
- ``out``: ``.json`` with a ``CocoMetric`` in the test evaluator writes the COCO
  results file, ``.json`` otherwise the metrics, ``.pkl`` the raw predictions
  (mmengine's ``DumpResults``; one file per evaluation entry, :func:`route_out`);
- ``show_dir``: pictures of the predictions (``ShowPredictionsHook``).

:func:`evaluate_results_file` scores an existing COCO results file without a model.
"""

from __future__ import annotations

import numbers
import os
import time

import mmengine
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger

from mtvision.data.label_space import dataloaders_with_model_classes
from mtvision.engine import build_runner, load_config
from mtvision.engine.config import default_work_dir
from mtvision.engine.model_source import ModelSource
from mtvision.errors import ConfigError
from mtvision.evaluation.coco_metric import CocoMetric, load_coco_results
from mtvision.export import DeployedModel, read_deploy_metadata
from mtvision.registry import METRICS
from mtvision.utils.atomic_files import check_output_dir, check_output_paths

__all__ = [
    "PICKLE_SUFFIXES",
    "evaluate",
    "evaluate_results_file",
    "format_metrics_table",
    "route_out",
]

#: ``out`` suffixes that dump the raw predictions instead of metrics or COCO results.
PICKLE_SUFFIXES = (".pkl", ".pickle")


def evaluate(
    config: str | os.PathLike | Config,
    checkpoint: str,
    *,
    backend: str = "torch",
    threads: int | None = None,
    cfg_options: dict | None = None,
    work_dir: str | None = None,
    launcher: str = "none",
    out: str | None = None,
    show_dir: str | None = None,
    show_limit: int | None = None,
    show_score_thr: float = 0.3,
) -> dict:
    """Every metric of ``checkpoint`` (backend ``"torch"``) or of the deployed file
    ``checkpoint`` (``"onnxruntime"``, ``"openvino"``: ``threads`` for its runtime) on
    the test set of ``config`` (a path or a ``Config``; ``cfg_options`` merged and
    checked by :func:`~mtvision.engine.load_config`).

    ``work_dir``: where logs go (default: the config's ``work_dir``, else
    ``work_dirs/<config stem>``). ``out``, ``show_dir``, ``show_limit`` and
    ``show_score_thr``: see the module docstring.

    Raises:
        OSError / ConfigError: an output path that cannot be written, checked before
            anything runs (:func:`~mtvision.utils.atomic_files.check_output_paths`).
        ConfigError: a bad config or option, or an ``out`` ``.json`` with several
            ``CocoMetric``s.
        CheckpointError / ExportError: weights that do not fit, a deployed file that
            does not match the config.
        AnnotationError: test data with a class the model does not have.
    """
    check_output_paths(files={"--out": out}, dirs={"--show-dir": show_dir})
    cfg = load_config(config, cfg_options)
    config_source = cfg.filename or str(config)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get("work_dir") or default_work_dir(config_source)
    check_output_dir(cfg.work_dir, "--work-dir" if work_dir else "work_dir")
    deployed = backend != "torch"
    source = (
        ModelSource(cfg, deployed_heads=read_deploy_metadata(checkpoint)["heads"])
        if deployed
        else ModelSource(cfg, checkpoint)
    )
    # The test data takes the model's label space (class names, by name), so a split
    # lacking some classes keeps the model's labels (mtvision.data.label_space).
    cfg.test_dataloader = dataloaders_with_model_classes(
        cfg.test_dataloader, cfg.get("test_evaluator"), source.model_dataset_meta
    )
    if deployed:
        cfg.model = dict(
            type=DeployedModel.__name__,
            onnx_file=checkpoint,
            model=cfg.model,
            threads=threads,
            config_source=config_source,
            runtime=backend,
        )
        cfg.load_from, cfg.resume = None, False
    else:
        cfg.load_from, cfg.resume = checkpoint, False
    writes_coco_results = out is not None and route_out(cfg, out)
    if show_dir is not None:
        show_hook = dict(
            type="ShowPredictionsHook",
            out_dir=show_dir,
            max_images=show_limit,
            score_threshold=show_score_thr,
        )
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), show_hook]
    runner = build_runner(cfg)
    if not deployed and hasattr(runner, "preload_checkpoint"):
        runner.preload_checkpoint(checkpoint, source.checkpoint)
    metrics = runner.test()
    if is_main_process() and out is not None and out.endswith(".json") and not writes_coco_results:
        mmengine.dump(metrics, out, indent=2, sort_keys=True)
    return metrics


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
    """``out`` for each evaluation entry: the file itself for one, ``stem.<entry>.pkl`` for several."""
    if len(entries) == 1:
        return {entries[0]: out}
    stem, suffix = os.path.splitext(out)
    return {entry: f"{stem}.{entry}{suffix}" for entry in entries}


def _is_coco_metric(evaluator) -> bool:
    metric_type = evaluator.get("type") if isinstance(evaluator, dict) else None
    if isinstance(metric_type, str):
        metric_type = METRICS.get(metric_type)
    return isinstance(metric_type, type) and issubclass(metric_type, CocoMetric)


def route_out(cfg: Config, out: str) -> bool:
    """Make the test evaluators of ``cfg`` write ``out``; True when it gets COCO results.

    ``.pkl``: mmengine's ``DumpResults`` is added (one file per evaluation entry,
    ``stem.<entry>.pkl``). ``.json`` with a CocoMetric: the metric writes its COCO
    results there. ``.json`` otherwise: nothing here (:func:`evaluate` writes the metrics).

    Raises:
        ConfigError: ``.json`` and several CocoMetrics (which one is unclear).
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
    """The COCO box metrics of a results file (keys ``coco/bbox_mAP`` ...) against a COCO
    annotation file; every image of the annotation file counts."""
    # The per-category table goes through mmengine's "current" logger, as under
    # a Runner; a new instance becomes the current one.
    MMLogger.get_instance(f"eval_predictions_{time.time_ns()}", log_level="INFO")
    metric = CocoMetric(ann_file=ann_file)
    metrics = metric.evaluate_results(load_coco_results(results_file), results_source=results_file)
    return {f"{metric.prefix}/{name}": value for name, value in metrics.items()}
