"""mmengine glue: safe checkpoint loading, atomic checkpoint writes, the runner, configs.

Importing this package installs two process-wide fixes through mmengine's own
extension points: the local-path checkpoint loader (weights-only unpickling,
:mod:`~mtvision.engine.checkpoint`) and the local file backend (atomic writes,
:mod:`~mtvision.utils.atomic_files`). It also registers
:class:`~mtvision.engine.runner.Runner` as ``'mtvision.Runner'``,
:class:`~mtvision.engine.resumable_sampler.ResumableSampler`,
:class:`~mtvision.engine.train_progress.TrainProgressHook`,
:class:`~mtvision.engine.show_predictions_hook.ShowPredictionsHook` and the multi-task
evaluation loops ``MultiTaskValLoop`` / ``MultiTaskTestLoop`` (LOOPS).
"""

from mtvision.engine.checkpoint import (
    CHECKPOINT_SAFE_GLOBALS,
    check_state_dict_fits,
    load_checkpoint_file,
)
from mtvision.engine.config import load_config
from mtvision.engine.latest_checkpoint import find_resumable_checkpoint
from mtvision.engine.multitask_loops import MultiTaskTestLoop, MultiTaskValLoop
from mtvision.engine.resumable_sampler import ResumableSampler
from mtvision.engine.runner import LAST_CHECKPOINT_NAME, Runner, build_runner
from mtvision.engine.show_predictions_hook import ShowPredictionsHook
from mtvision.engine.train_progress import TrainProgress, TrainProgressHook
from mtvision.utils.atomic_files import AtomicLocalBackend, atomic_publish, atomic_write_bytes

__all__ = [
    "CHECKPOINT_SAFE_GLOBALS",
    "LAST_CHECKPOINT_NAME",
    "MultiTaskTestLoop",
    "MultiTaskValLoop",
    "AtomicLocalBackend",
    "ResumableSampler",
    "Runner",
    "ShowPredictionsHook",
    "TrainProgress",
    "TrainProgressHook",
    "atomic_publish",
    "atomic_write_bytes",
    "build_runner",
    "check_state_dict_fits",
    "find_resumable_checkpoint",
    "load_checkpoint_file",
    "load_config",
]
