"""Speed of mtvision against the references it replaces, as ratios, in one process and one run.

- :func:`run_benchmarks` with :class:`BenchmarkOptions`: what ``tools/benchmark.py`` runs.
- :mod:`~mtvision.benchmarks.networks`: network comparisons (mtvision vs torchvision
  eager, onnxruntime vs torch, multi-task vs three single-task models, TopKAccuracy).
- :mod:`~mtvision.benchmarks.end_to_end`: ``--task cls|det|seg|seg-ade|multitask``, uint8
  image in, final results out; its contenders in :mod:`~mtvision.benchmarks.contenders`
  (mtvision torch, deployed graphs in onnxruntime / OpenVINO),
  :mod:`~mtvision.benchmarks.phone_files` (LiteRT ``.tflite`` and ExecuTorch ``.pte``,
  float and int8) and
  :mod:`~mtvision.benchmarks.references` (torchvision, TFLite runtime); results per
  head, described and compared by each head's task adapter, in
  :mod:`~mtvision.benchmarks.results`.
- :mod:`~mtvision.benchmarks.timing`: rotating groups, blocks, medians of per-run
  ratios; :mod:`~mtvision.benchmarks.report`: what is printed.
"""

from mtvision.benchmarks.end_to_end import TASK_INPUT_SIZES, TASKS
from mtvision.benchmarks.images import realdata_folder
from mtvision.benchmarks.options import BenchmarkOptions
from mtvision.benchmarks.runner import run_benchmarks
from mtvision.benchmarks.timing import make_row, time_group

__all__ = [
    "TASKS",
    "TASK_INPUT_SIZES",
    "BenchmarkOptions",
    "make_row",
    "realdata_folder",
    "run_benchmarks",
    "time_group",
]
