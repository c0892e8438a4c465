"""One benchmark run: the network comparisons or one end-to-end task, at each thread count."""

from __future__ import annotations

import torch

from mtvision.benchmarks.end_to_end import run_task
from mtvision.benchmarks.networks import run_networks
from mtvision.benchmarks.options import BenchmarkOptions
from mtvision.benchmarks.report import print_task_versions


def run_benchmarks(options: BenchmarkOptions) -> list[dict]:
    """Run what ``options`` names and print its tables; torch's thread count is restored.

    Returns, without ``options.task``, the network comparisons' rows of every thread
    count in turn (:func:`mtvision.benchmarks.timing.make_row` dicts:
    ``name``, ``ours_ms``, ``reference_ms``, ``ratio``, ``ratio_iqr``, ``check`` and
    for image rows ``images_per_s``); with it, one table per thread count
    (:func:`mtvision.benchmarks.end_to_end.task_table`).
    """
    previous_threads = torch.get_num_threads()
    try:
        if options.task:
            print_task_versions()
            return run_task(options)
        rows = []
        for threads in options.threads:
            torch.set_num_threads(threads)
            rows += run_networks(options, threads)
        return rows
    finally:
        # Also called in-process (tests, notebooks): leave torch's thread pool as it was.
        torch.set_num_threads(previous_threads)
