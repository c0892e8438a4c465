"""Evaluate a checkpoint on a config's test set (mmdet's tools/test.py conventions).

    python tools/eval.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]

Runs the test loop and prints the metrics. ``--out metrics.json`` also writes
the metrics as JSON; ``--out predictions.pkl`` dumps the raw predictions
(mmengine's ``DumpResults``). The checkpoint must fit the model exactly.
"""

import argparse

import mmengine
from mmengine.dist import is_main_process

from mtvision.engine import build_runner, load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.config import default_work_dir

PICKLE_SUFFIXES = (".pkl", ".pickle")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the test set.")
    parser.add_argument("config", help="config file path")
    parser.add_argument("checkpoint", help="checkpoint file, e.g. work_dirs/NAME/last.pth")
    parser.add_argument("--work-dir", help="where logs go")
    parser.add_argument(
        "--out", help="write metrics (.json) or dump predictions (.pkl/.pickle) to this file"
    )
    add_cfg_options_argument(parser, "test_dataloader.batch_size=8")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith((".json", *PICKLE_SUFFIXES)):
        parser.error(f"--out {args.out}: use a .json (metrics) or .pkl (predictions) file")
    return args


def main(argv=None) -> dict:
    """Evaluate as the command line says; returns the metrics dict."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or default_work_dir(args.config)
    cfg.load_from, cfg.resume = args.checkpoint, False
    if args.out is not None and args.out.endswith(PICKLE_SUFFIXES):
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, list | tuple) else [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type="DumpResults", out_file_path=args.out)]
    runner = build_runner(cfg)
    metrics = runner.test()
    if is_main_process():
        # mmengine's json handler also converts numpy numbers.
        print(mmengine.dump(metrics, file_format="json", indent=2, sort_keys=True))
        if args.out is not None and args.out.endswith(".json"):
            mmengine.dump(metrics, args.out, indent=2, sort_keys=True)
    return metrics


if __name__ == "__main__":
    run_cli(main)
