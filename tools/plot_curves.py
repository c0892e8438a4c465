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
from mtvision.utils.atomic_files import atomic_write_bytes
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
    log = find_scalar_log(args.work_dir)
    curves = read_scalar_log(log)
    out = args.out or os.path.join(
        args.work_dir if os.path.isdir(args.work_dir) else os.path.dirname(log), "curves.png"
    )
    picture = plot_training_curves(curves, args.metrics)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_write_bytes(out, picture)
    print(
        f"wrote {out}: {len(curves.losses)} loss curves, {len(curves.metrics)} metrics from {log}"
    )
    return curves


if __name__ == "__main__":
    run_cli(main)
