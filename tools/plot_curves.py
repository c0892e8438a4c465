"""Plot a training run's curves: losses per task and metrics per validation.

    python tools/plot_curves.py WORK_DIR [--out curves.png] [--metrics PATTERN ...]

Reads mmengine's scalar log of the run (``WORK_DIR/<timestamp>/vis_data/scalars.json``,
written by the default ``LocalVisBackend``; the newest training run when there
are several, or give the file itself) and writes one PNG: a panel with every
``loss*`` curve against the iteration, and one panel per metric prefix
(``classification``, ``coco``, ``voc``, ...) with each validation's values.
``--metrics`` selects metrics by ``fnmatch`` pattern, e.g. ``--metrics
'*/top1' 'coco/bbox_mAP' 'voc/mIoU'``. See
``mtvision/visualization/training_curves.py``.
"""

from __future__ import annotations

import argparse
import os

from mtvision.engine.cli import run_cli
from mtvision.utils.atomic_files import atomic_write_bytes, check_output_file
from mtvision.visualization.training_curves import (
    TrainingCurves,
    find_scalar_log,
    plot_training_curves,
    read_scalar_log,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", help="training work dir (or its vis_data/scalars.json)")
    parser.add_argument("--out", help="PNG to write (default: WORK_DIR/curves.png)")
    parser.add_argument(
        "--metrics", nargs="+", metavar="PATTERN", help="metrics to plot (fnmatch patterns)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> TrainingCurves:
    """Write the PNG; returns the curves read."""
    args = parse_args(argv)
    if args.out is not None:
        check_output_file(args.out, "--out", example="curves.png")
    log = find_scalar_log(args.work_dir)
    curves = read_scalar_log(log)
    out = args.out or os.path.join(
        args.work_dir if os.path.isdir(args.work_dir) else os.path.dirname(log), "curves.png"
    )
    check_output_file(out, "--out" if args.out else "the curves file")
    picture = plot_training_curves(curves, args.metrics)
    atomic_write_bytes(out, picture)
    print(
        f"wrote {out}: {len(curves.losses)} loss curves, {len(curves.metrics)} metrics from {log}"
    )
    return curves


if __name__ == "__main__":
    run_cli(main)
