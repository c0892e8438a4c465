"""Timing contenders against each other: rotating groups, blocks, medians of per-run ratios.

Absolute times on a shared machine are noise; ratios of runs interleaved in the
same process much less so. Each run times all contenders back to back, rotating
which goes first; a ratio is the median over runs of one contender's time over
another's within a run, with its interquartile range.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def on_device(function: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``function`` that, on a GPU, returns only once the kernels it queued have finished."""
    if device.type != "cuda":
        return function

    def synchronized():
        result = function()
        torch.cuda.synchronize(device)
        return result

    return synchronized


def time_group(
    functions: Sequence[Callable[[], object]], runs: int, warmup: int, block: int = 1
) -> list[list[float]]:
    """Wall times in ms of each of ``functions``, all run back to back, ``runs`` times.

    Run ``r`` starts with function ``r mod n`` and goes round in order, which
    spreads the advantage of going first (warm caches) evenly; grouping spreads
    slow drifts of a shared machine evenly over all of them, so per-run ratios
    are comparable. With ``block > 1`` each function's turn is one untimed call,
    then ``block`` timed calls whose median is the run's sample: a runtime's
    worker threads are then awake and alone, as in an application that runs one
    model continuously, and the spinning threads of the runtime before it (OpenMP,
    onnxruntime, XNNPACK and TBB pools spin-wait after their work) only slow the
    untimed call.
    """
    for _ in range(warmup):
        for function in functions:
            function()
    samples: list[list[float]] = [[] for _ in functions]
    for run in range(runs):
        for step in range(len(functions)):
            index = (run + step) % len(functions)
            function = functions[index]
            if block == 1:
                start = time.perf_counter()
                function()
                samples[index].append((time.perf_counter() - start) * 1e3)
                continue
            function()
            times = []
            for _ in range(block):
                start = time.perf_counter()
                function()
                times.append((time.perf_counter() - start) * 1e3)
            samples[index].append(statistics.median(times))
    return samples


def time_pair(
    ours: Callable[[], object], reference: Callable[[], object], runs: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Wall times in ms of ``ours()`` and ``reference()``, run back to back ``runs`` times.

    The order alternates from run to run (:func:`time_group` of two).
    """
    ours_ms, reference_ms = time_group((ours, reference), runs, warmup)
    return ours_ms, reference_ms


def quartiles(samples: list[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles of ``samples`` (both the one value when there is one)."""
    if len(samples) == 1:
        return samples[0], samples[0]
    low, _, high = statistics.quantiles(samples, n=4)
    return low, high


def make_row(
    name: str,
    ours_ms: list[float],
    reference_ms: list[float],
    check: str,
    images: int | None = None,
) -> dict:
    """Medians of both, and the median and quartiles of the per-run ratio ours / reference.

    ``images``: images per timed call, for rows that process images; adds
    ``images_per_s`` (ours, reference) from the median times.
    """
    ratios = sorted(o / r for o, r in zip(ours_ms, reference_ms, strict=True))
    row = {
        "name": name,
        "ours_ms": statistics.median(ours_ms),
        "reference_ms": statistics.median(reference_ms),
        "ratio": statistics.median(ratios),
        "ratio_iqr": quartiles(ratios),
        "check": check,
    }
    if images is not None:
        row["images_per_s"] = (
            images * 1e3 / row["ours_ms"],
            images * 1e3 / row["reference_ms"],
        )
    return row
