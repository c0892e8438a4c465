"""Training curves from mmengine's scalar log: losses per task and metrics per validation.

mmengine's ``LocalVisBackend`` (the Runner's default visualizer) appends one
JSON object per line to ``<work_dir>/<timestamp>/vis_data/scalars.json``:

- training lines, every ``LoggerHook`` interval:
  ``{"lr": ..., "loss": ..., "loss_<head>": ..., "time": ..., "iter": 40, "step": 40}``
  (plus ``"epoch"`` in epoch-based training);
- validation lines, after each validation:
  ``{"coco/bbox_mAP": ..., "voc/mIoU": ..., "time": ..., "step": <epoch, or 0 in
  iteration-based training>}``.

A validation is placed at the iteration of the last training line logged
before it (its ``step`` is an epoch, or 0, and not on the loss curves' axis),
so losses and metrics share the iteration axis.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from mtvision.errors import ScalarLogError

__all__ = ["TrainingCurves", "find_scalar_log", "plot_training_curves", "read_scalar_log"]

# Logged with the scalars but neither a loss nor a metric.
_BOOKKEEPING = frozenset({"lr", "time", "data_time", "memory", "iter", "epoch", "step"})
UNDEFINED = -1.0  # what COCOeval reports for a statistic without ground truth


@dataclass
class TrainingCurves:
    """Series read from a scalar log: name -> (iterations, values), both lists.

    ``losses``: every training key containing ``"loss"`` (the total ``loss``
    and one ``loss_*`` per task or term). ``metrics``: every validation key
    (``prefix/name``), values equal to -1 (undefined) left out.
    """

    source: str
    losses: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    metrics: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def find_scalar_log(work_dir: str | os.PathLike) -> str:
    """The scalar log of a work dir's latest training run (or the file itself, if given one).

    Runs are the ``<timestamp>/`` folders mmengine makes, one per start
    (training, resuming, evaluating); the newest holding a training line wins,
    else the newest with any line.

    Raises:
        FileNotFoundError: no ``*/vis_data/scalars.json`` under ``work_dir``.
    """
    work_dir = os.fspath(work_dir)
    if os.path.isfile(work_dir):
        return work_dir
    pattern = os.path.join(work_dir, "*", "vis_data", "scalars.json")
    logs = sorted(glob.glob(pattern), reverse=True)
    if not logs:
        raise FileNotFoundError(
            f"no mmengine scalar log in {work_dir} (looked for {pattern}; mmengine's "
            "LocalVisBackend writes it during training)"
        )
    for log in logs:
        with open(log, encoding="utf-8") as file:
            if any('"lr"' in line or '"iter"' in line for line in file):
                return log
    return logs[0]


def read_scalar_log(path: str | os.PathLike) -> TrainingCurves:
    """Parse a ``scalars.json`` into loss and metric series (see the module docstring).

    Raises:
        ScalarLogError: a line that is not a JSON object (names the file and line).
    """
    path = os.fspath(path)
    curves = TrainingCurves(source=path)
    last_iter = 0
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                scalars = json.loads(line)
            except json.JSONDecodeError as error:
                raise ScalarLogError(f"{path}:{number}: not a JSON line ({error})") from error
            if not isinstance(scalars, dict):
                raise ScalarLogError(f"{path}:{number}: expected a JSON object, got {line[:60]!r}")
            if "lr" in scalars or "iter" in scalars:
                last_iter = int(scalars.get("iter", scalars.get("step", last_iter)))
                series, names = curves.losses, [k for k in scalars if "loss" in k]
            else:
                series, names = curves.metrics, [k for k in scalars if k not in _BOOKKEEPING]
            for name in names:
                value = scalars[name]
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                if series is curves.metrics and value == UNDEFINED:
                    continue
                xs, ys = series.setdefault(name, ([], []))
                xs.append(last_iter)
                ys.append(float(value))
    return curves


def plot_training_curves(
    curves: TrainingCurves, metrics: Sequence[str] | None = None, dpi: int = 100
) -> bytes:
    """A PNG: one panel of the losses, one per metric prefix (``coco``, ``voc``, ...).

    Args:
        curves: what :func:`read_scalar_log` read.
        metrics: ``fnmatch`` patterns selecting metrics (e.g. ``"*/mIoU"``,
            ``"coco/bbox_mAP*"``); ``None`` plots all.
        dpi: resolution; panels are 5 x 4 inches.

    Raises:
        ScalarLogError: nothing to plot (no loss and no selected metric).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    selected = {
        name: series
        for name, series in curves.metrics.items()
        if metrics is None or any(fnmatch.fnmatchcase(name, p) for p in metrics)
    }
    if not curves.losses and not selected:
        raise ScalarLogError(
            f"{curves.source}: nothing to plot (no loss line"
            + (f" and no metric matching {list(metrics)})" if metrics else " and no metric)")
        )
    groups: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for name, series in sorted(selected.items()):
        prefix, _, short = name.rpartition("/")
        groups.setdefault(prefix or "metrics", {})[short] = series

    panels = (1 if curves.losses else 0) + len(groups)
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False, sharex=True)
    axes = list(axes[0])
    if curves.losses:
        ax = axes.pop(0)
        for name, (xs, ys) in sorted(curves.losses.items()):
            total = name == "loss"
            ax.plot(
                xs, ys, label=name, color="black" if total else None, linewidth=2 if total else 1
            )
        ax.set(title="losses", xlabel="iteration", ylabel="loss")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    for ax, (prefix, series) in zip(axes, groups.items(), strict=True):
        for name, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set(title=f"{prefix} (per validation)", xlabel="iteration")
        ax.legend(fontsize="small", ncol=2 if len(series) > 6 else 1)
        ax.grid(alpha=0.3)
    figure.suptitle(curves.source, fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()
