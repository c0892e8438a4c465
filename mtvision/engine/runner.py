"""mtvision's mmengine ``Runner``: CPU torchrun, strict loading, exact and elastic resume.

Differences from :class:`mmengine.runner.Runner`, each where mmengine breaks
or stays silent:

- ``launcher='pytorch'`` without a GPU: mmengine calls ``torch.cuda.set_device``
  and wraps DDP with ``device_ids=[LOCAL_RANK]``, both invalid on CPU. Here the
  process group is started with gloo from torchrun's environment and DDP gets
  ``device_ids=None``. With CUDA available nothing changes. ``sync_bn`` (torch's
  ``SyncBatchNorm``, CUDA only) is refused on CPU with a :class:`ConfigError`.
- ``load_checkpoint`` (used by ``load_from``, ``resume`` and tools/eval.py) is
  strict by default, and a checkpoint that does not fit the model raises
  :class:`~mtvision.engine.checkpoint.CheckpointError` on every rank, naming
  the file and the missing / unexpected / mis-shaped keys. It takes a checkpoint
  a command has already read (:meth:`Runner.preload_checkpoint`) instead of
  reading the file again.
- Every checkpoint the ``CheckpointHook`` records as the latest is also
  published, atomically, as ``<work_dir>/last.pth``. Auto-resume
  (``resume=True`` without ``load_from``) starts from the newest checkpoint of
  the work dir that loads (:mod:`~mtvision.engine.latest_checkpoint`): a
  truncated ``last.pth`` is skipped, named in the log, for the one before.
- Under ``torchrun --max-restarts=N``, workers restarted after a failure
  (``TORCHELASTIC_RESTART_COUNT`` > 0) resume from the work dir by themselves.
- Checkpoints record where training stood (:mod:`~mtvision.engine.train_progress`).
  An epoch-based run resumed from a checkpoint written mid-epoch skips the
  part of the epoch already trained on (mmengine would train on it again),
  through the train loader's sampler: a ``DefaultSampler`` in a config is
  built as :class:`~mtvision.engine.resumable_sampler.ResumableSampler`, the
  same order with a start offset.
- The effective batch (processes x images per process) and the learning rate
  it gives (``auto_scale_lr``) are logged when training starts. Resuming with
  another number of processes says what changed and, with ``auto_scale_lr``,
  rescales the learning rate to the new batch (mmengine keeps the old one).

- The start-up log is one line (versions, device, seed); mmengine's
  environment dump and the config text are logged at DEBUG (``log_level``).
- While training, the val data is labelled in the training data's label
  space (its class names, :mod:`mtvision.data.label_space`).

Checkpoint files are read with ``weights_only=True`` and written atomically
(see :mod:`mtvision.engine.checkpoint` and :mod:`mtvision.utils.atomic_files`).
"""

import copy
import datetime
import logging
import math
import os
import os.path as osp
import re
from collections import OrderedDict

import mmengine
import mmengine.dist
import mmengine.runner
import torch
import torch.distributed as torch_dist
from mmengine.dataset import DefaultSampler
from mmengine.device import get_device
from mmengine.dist import master_only
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import BaseLoop, EpochBasedTrainLoop
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
from mmengine.utils.dl_utils import collect_env
from torch.nn.parallel import DistributedDataParallel

import mtvision
from mtvision.data.label_space import dataloaders_with_model_classes
from mtvision.engine.checkpoint import check_state_dict_fits
from mtvision.engine.latest_checkpoint import LAST_CHECKPOINT_NAME, find_resumable_checkpoint
from mtvision.engine.resumable_sampler import ResumableSampler
from mtvision.engine.train_progress import TrainProgress, TrainProgressHook, current_setup
from mtvision.errors import CheckpointError, ConfigError
from mtvision.registry import RUNNERS
from mtvision.utils.atomic_files import atomic_publish
from mtvision.utils.state_dict import unwrap_state_dict

_DEFAULT_SAMPLER_NAMES = ("DefaultSampler", "mmengine.DefaultSampler", DefaultSampler)

#: Scheduler state that says how far the schedule has got (and the values it
#: reached); everything else in its state dict is the schedule's shape.
_SCHEDULER_PROGRESS = ("last_step", "_global_step", "base_values", "_last_value")


def elastic_restart_count() -> int:
    """How often torchrun has restarted this worker group (0 outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0)


def _format_lrs(optim_wrapper) -> str:
    values = sorted({round(lr, 12) for lrs in optim_wrapper.get_lr().values() for lr in lrs})
    return "/".join(f"{lr:.6g}" for lr in values)


def _flat_schedulers(param_schedulers) -> list:
    if param_schedulers is None:
        return []
    if isinstance(param_schedulers, dict):
        return [s for group in param_schedulers.values() for s in group]
    return list(param_schedulers)


def _steps_in_range(global_step: int, begin: int, end: int) -> int:
    """Calls of ``_ParamScheduler.step`` among steps ``0..global_step`` that fall in [begin, end)."""
    return max(0, min(global_step, end - 1) - max(begin, 0) + 1)


@RUNNERS.register_module()
class Runner(mmengine.runner.Runner):
    """:class:`mmengine.runner.Runner` that also trains on CPU under torchrun and resumes exactly.

    Configs select it with ``runner_type = 'mtvision.Runner'``; tools/train.py
    and tools/eval.py use it when a config names no ``runner_type``.
    """

    #: The factor ``auto_scale_lr`` applied to the config's learning rates (1.0 when off).
    lr_scale: float = 1.0

    # ----------------------------------------------------------------- setup

    def setup_env(self, env_cfg: dict) -> None:
        # mmengine skips its own (CUDA-only) initialisation when a process
        # group already exists, so starting one here is enough.
        if (
            self.launcher == "pytorch"
            and not torch.cuda.is_available()
            and not torch_dist.is_initialized()
        ):
            timeout = env_cfg.get("dist_cfg", {}).get("timeout")
            torch_dist.init_process_group(
                backend="gloo",
                init_method="env://",
                timeout=None if timeout is None else datetime.timedelta(seconds=timeout),
            )
        super().setup_env(env_cfg)

    def _log_env(self, env_cfg: dict) -> None:
        """One line at INFO (versions, device, seed); mmengine's environment dump
        (platform, compilers, the full CUDA build string) and the config at DEBUG,
        shown with ``log_level='DEBUG'`` (the config is saved in the work dir anyway)."""
        device = get_device()
        if device == "cuda":
            device = f"cuda ({torch.cuda.get_device_name()})"
        self.logger.info(
            f"mtvision {mtvision.__version__}, torch {torch.__version__}, mmengine "
            f"{mmengine.__version__}; {self.world_size} process(es) on {device}; seed {self.seed}"
            " (log_level='DEBUG' logs the environment and the config)"
        )
        if any(handler.level <= logging.DEBUG for handler in self.logger.handlers):
            environment = {
                **collect_env(),
                **env_cfg,
                **self._randomness_cfg,
                "seed": self.seed,
                "launcher": self.launcher,
            }
            lines = "".join(f"\n    {key}: {value}" for key, value in environment.items())
            self.logger.debug(f"Environment:{lines}")
            if self.cfg._cfg_dict:
                self.logger.debug(f"Config:\n{self.cfg.pretty_text}")

    def wrap_model(self, model_wrapper_cfg, model):
        sync_bn = self.cfg.get("sync_bn")
        if sync_bn is not None and not torch.cuda.is_available():
            raise ConfigError(
                f"sync_bn={sync_bn!r}: torch.nn.SyncBatchNorm runs only on CUDA GPUs and none "
                "is available here; train on CPU with per-process BatchNorm "
                "(--cfg-options sync_bn=None)"
            )
        if self.distributed and not torch.cuda.is_available() and not is_model_wrapper(model):
            model_wrapper_cfg = dict(
                model_wrapper_cfg
                or dict(
                    type="MMDistributedDataParallel",
                    broadcast_buffers=False,
                    find_unused_parameters=self.cfg.get("find_unused_parameters", False),
                )
            )
            wrapper_type = MODEL_WRAPPERS.get(
                model_wrapper_cfg.setdefault("type", "MMDistributedDataParallel")
            )
            # mmengine passes device_ids=[LOCAL_RANK] as a default argument;
            # a value in the config takes precedence, and CPU modules need None.
            if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
                model_wrapper_cfg.setdefault("device_ids", None)
        return super().wrap_model(model_wrapper_cfg, model)

    def build_val_loop(self, loop):
        """mmengine's, with the val data labelled in the training data's label space.

        While training (the train loop is built), the val datasets take the train
        dataset's class names as ``model_classes`` (:mod:`mtvision.data.label_space`):
        a val split lacking some classes keeps the training labels.
        """
        if isinstance(loop, dict) and isinstance(self._train_loop, BaseLoop):
            train_meta = getattr(self._train_loop.dataloader.dataset, "metainfo", None)
            self._val_dataloader = dataloaders_with_model_classes(
                self._val_dataloader, self._val_evaluator, train_meta
            )
        return super().build_val_loop(loop)

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        super().register_hooks(default_hooks, custom_hooks)
        self.register_hook(TrainProgressHook())

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        """mmengine's ``build_dataloader``; a ``DefaultSampler`` is built as ``ResumableSampler``.

        Same order; the subclass only adds the mid-epoch start used on resume.
        """
        if isinstance(dataloader, dict):
            sampler = dataloader.get("sampler")
            if isinstance(sampler, dict) and sampler.get("type") in _DEFAULT_SAMPLER_NAMES:
                dataloader = copy.copy(dataloader)
                dataloader["sampler"] = dict(sampler, type=ResumableSampler)
        return mmengine.runner.Runner.build_dataloader(
            dataloader, seed=seed, diff_rank_seed=diff_rank_seed
        )

    def scale_lr(self, optim_wrapper, auto_scale_lr=None) -> None:
        """mmengine's linear scaling rule, and one log line with the effective batch and the lr."""
        config_lrs = _format_lrs(optim_wrapper)
        super().scale_lr(optim_wrapper, auto_scale_lr)
        setup = current_setup(self)
        batch = setup["world_size"] * setup["batch_size"]
        processes = f"{setup['world_size']} process{'es' if setup['world_size'] > 1 else ''}"
        backend = f", {torch_dist.get_backend()}" if self.distributed else ""
        line = f"effective batch {batch} ({processes} x {setup['batch_size']} images{backend})"
        base = (auto_scale_lr or {}).get("base_batch_size")
        if auto_scale_lr and auto_scale_lr.get("enable", False):
            self.lr_scale = batch / base
            line += (
                f"; lr {config_lrs} -> {_format_lrs(optim_wrapper)} "
                f"(auto_scale_lr: x{self.lr_scale:g} = {batch} / base batch {base})"
            )
        else:
            line += f"; lr {config_lrs} as configured"
            if base:
                line += (
                    f" for a batch of {base} (auto_scale_lr off; --auto-scale-lr would "
                    f"scale it x{batch / base:g})"
                )
        self.logger.info(line)

    # ---------------------------------------------------------- checkpoints

    def load_checkpoint(
        self,
        filename: str,
        map_location="cpu",
        strict: bool = True,
        revise_keys: list = [(r"^module.", "")],  # noqa: B006  (mmengine's signature)
    ):
        """Load ``filename`` into the model; strict unless ``strict=False``.

        The weights are found and checked as by every mtvision loader
        (:mod:`mtvision.utils.state_dict`): ``state_dict``/``model`` entries
        unwrapped, a uniform ``module.`` prefix stripped, and weights that do not
        fit (or, non-strict, match no key at all) refused in one line.
        """
        preloaded = getattr(self, "_preloaded_checkpoints", {})
        if filename in preloaded:
            checkpoint = preloaded.pop(filename)
        else:
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f"{filename}: holds a {type(checkpoint).__name__}, not a dict")
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        state_dict = unwrap_state_dict(checkpoint, filename)
        metadata = getattr(state_dict, "_metadata", None)
        for pattern, replacement in revise_keys:
            state_dict = OrderedDict(
                (re.sub(pattern, replacement, k), v) for k, v in state_dict.items()
            )
        if metadata is not None:
            state_dict._metadata = metadata
        check_state_dict_fits(model, state_dict, filename, strict=strict)
        _load_checkpoint_to_model(model, {"state_dict": state_dict}, strict, revise_keys=[])
        self._loaded_meta = checkpoint.get("meta")
        self._has_loaded = True
        self.logger.info(f"Load checkpoint from {filename}")
        return checkpoint

    def preload_checkpoint(self, filename: str, checkpoint: dict) -> None:
        """Give the contents of ``filename``, already read (CPU tensors), to the next
        :meth:`load_checkpoint` of that file (``load_from``), so that a command that read
        the checkpoint for its class names does not read it again
        (:class:`~mtvision.engine.model_source.ModelSource`)."""
        if not hasattr(self, "_preloaded_checkpoints"):
            self._preloaded_checkpoints = {}
        self._preloaded_checkpoints[filename] = checkpoint

    def load_or_resume(self) -> None:
        restarts = elastic_restart_count()
        auto_resume = self._resume and self._load_from is None
        if not self._has_loaded and (restarts or auto_resume):
            found, skipped = find_resumable_checkpoint(self.work_dir)
            for path, reason in skipped:
                self.logger.warning(f"skipping checkpoint {path}: {reason}")
            if found is None and skipped:
                raise CheckpointError(
                    f"{self.work_dir}: none of its checkpoints loads; skipped "
                    + ", ".join(path for path, _ in skipped)
                )
            if restarts:
                # torchrun restarted the workers after a failure: continue
                # from the work dir, whatever the command line said.
                self.logger.warning(
                    f"torchrun restarted the workers (restart {restarts}): "
                    + (
                        f"resuming from {found}"
                        if found
                        else "no checkpoint in the work dir yet, starting as the command says"
                    )
                )
            elif found is None:
                self.logger.warning(f"no checkpoint in {self.work_dir}: training from the start")
            elif skipped:
                self.logger.warning(f"resuming from {found} instead")
            if found is not None:
                self._resume, self._load_from = True, found
            elif auto_resume:
                self._resume = False  # mmengine would look for its pointer file again
        if self.distributed and not self._has_loaded:
            self._check_ranks_agree()
            self._warn_if_restarts_share_the_store()
        super().load_or_resume()

    def _check_ranks_agree(self) -> None:
        """Every rank must start from the same checkpoint (or none), or training diverges.

        They disagree when the work dir is not one directory shared by all
        nodes, or when torchrun restarted only some nodes' workers.
        """
        source = self._load_from
        size = osp.getsize(source) if source and osp.isfile(source) else None
        choices = mmengine.dist.all_gather_object((bool(self._resume), source, size))
        if any(choice != choices[0] for choice in choices):
            described = "; ".join(
                f"rank {rank}: {'resume from' if resume else 'load'} {path or 'nothing'}"
                for rank, (resume, path, _) in enumerate(choices)
            )
            raise CheckpointError(
                f"the processes would start from different checkpoints ({described}); "
                "with several nodes, the work dir must be one directory that all of them share"
            )

    def _warn_if_restarts_share_the_store(self) -> None:
        max_restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS") or 0)
        if max_restarts and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            self.logger.warning(
                "torchrun --max-restarts shares its rendezvous store with the workers; "
                "restarted workers can then read the failed ones' addresses and fail or hang "
                "(pytorch/pytorch#167288, #135712): launch torchrun with "
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"
            )

    def resume(self, filename: str, *args, **kwargs) -> None:
        fresh_schedulers = [
            copy.deepcopy(s.state_dict()) for s in _flat_schedulers(self.param_schedulers)
        ]
        try:
            super().resume(filename, *args, **kwargs)
        except KeyError as error:
            raise CheckpointError(
                f"{filename}: not a resumable training checkpoint (it has no {error} entry); "
                "to start from its weights, use load_from instead"
            ) from error
        self._continue(filename, TrainProgress.from_meta(self._loaded_meta), fresh_schedulers)

    def _continue(self, filename: str, old: TrainProgress | None, fresh_schedulers: list) -> None:
        """Put the data order, iteration count and lr where ``old`` left them, for this setup."""
        loop = self.train_loop
        if old is None:
            if isinstance(loop, EpochBasedTrainLoop) and loop.iter != loop.epoch * len(
                loop.dataloader
            ):
                self.logger.warning(
                    f"{filename} does not record its position in epoch {loop.epoch + 1} "
                    "(written before mtvision did): the epoch restarts at its first batch"
                )
            return
        new = TrainProgress(**current_setup(self), epoch=old.epoch, epoch_samples_seen=0)
        old_lrs = _format_lrs(self.optim_wrapper)
        if not new.by_epoch:
            if new.effective_batch_size != old.effective_batch_size:
                raise ConfigError(
                    f"{filename}: trained with an effective batch of {old.effective_batch_size} "
                    f"({old.world_size} x {old.batch_size}), this run has "
                    f"{new.effective_batch_size} ({new.world_size} x {new.batch_size}); an "
                    "iteration-based loop replays the data order by iteration count, so it "
                    "cannot continue it with another batch; keep the effective batch "
                    "(train_dataloader.batch_size x processes) or start a new run with load_from"
                )
        else:
            self._continue_epoch(filename, old, new, fresh_schedulers)
        if new.lr_scale != old.lr_scale:
            self._rescale_lr(new.lr_scale / old.lr_scale)
        if (new.world_size, new.batch_size, new.lr_scale) != (
            old.world_size,
            old.batch_size,
            old.lr_scale,
        ):
            self.logger.warning(self._describe_change(old, new, old_lrs))

    def _continue_epoch(self, filename, old: TrainProgress, new: TrainProgress, fresh) -> None:
        loop = self.train_loop
        sampler = loop.dataloader.sampler
        if old.mid_epoch and old.dataset_length != new.dataset_length:
            raise ConfigError(
                f"{filename}: written in the middle of epoch {old.epoch + 1} of a training "
                f"set of {old.dataset_length} images, this one has {new.dataset_length}: "
                "the images the epoch has not yet seen cannot be told; resume from a "
                "checkpoint written at the end of an epoch"
            )
        if old.epoch_samples_seen and not isinstance(sampler, ResumableSampler):
            raise ConfigError(
                f"{filename}: written in the middle of epoch {old.epoch + 1}, but the train "
                f"sampler {type(sampler).__name__} cannot start mid-epoch; use "
                "DefaultSampler (built as mtvision's ResumableSampler) or resume from a "
                "checkpoint written at the end of an epoch"
            )
        whole_epoch = len(loop.dataloader)
        seen = old.epoch_samples_seen
        if seen >= old.dataset_length:
            seen = new.dataset_length  # that epoch's last batch was trained on
        if seen:
            sampler.resume_at(old.epoch, seen)
        if whole_epoch == old.iters_per_epoch:
            return
        # Another number of iterations per epoch (processes or batch changed):
        # count iterations in the new unit, so that the loop ends where it
        # should, and move schedules converted from epochs along.
        remaining = whole_epoch
        if seen:
            rounding = math.floor if loop.dataloader.drop_last else math.ceil
            remaining = rounding(sampler.samples_after(seen) / new.batch_size)
        loop._iter = (old.epoch + 1) * whole_epoch - remaining
        self._move_converted_schedulers(fresh, loop._iter)

    def _move_converted_schedulers(self, fresh: list, global_step: int) -> None:
        """Schedulers built with ``convert_to_iter_based``: the new shape, at ``global_step``.

        Their state dict holds begin/end in iterations of the old epoch
        length; the freshly built ones hold them in the new one.
        """
        configs = self.cfg.get("param_scheduler") or []
        configs = [configs] if isinstance(configs, dict) else list(configs)
        converted = [
            bool(c.get("convert_to_iter_based")) and c.get("by_epoch", True) for c in configs
        ]
        schedulers = _flat_schedulers(self.param_schedulers)
        if not any(converted):
            return
        if isinstance(self.param_schedulers, dict) or len(converted) != len(schedulers):
            raise ConfigError(
                "param_scheduler: schedules converted from epochs to iterations cannot be "
                "moved to a new number of iterations per epoch for several optimizers; "
                "resume with the same processes and batch"
            )
        for scheduler, fresh_state, is_converted in zip(schedulers, fresh, converted, strict=True):
            if not is_converted:
                continue
            progress = {key: scheduler.__dict__[key] for key in _SCHEDULER_PROGRESS}
            scheduler.load_state_dict(copy.deepcopy(fresh_state))
            scheduler.__dict__.update(progress)
            scheduler._global_step = global_step
            scheduler.last_step = _steps_in_range(global_step, scheduler.begin, scheduler.end) - 1

    def _rescale_lr(self, factor: float) -> None:
        """Multiply the lr everywhere it lives (optimizer groups, lr schedulers) by ``factor``."""
        wrappers = (
            list(self.optim_wrapper.values())
            if isinstance(self.optim_wrapper, OptimWrapperDict)
            else [self.optim_wrapper]
        )
        for wrapper in wrappers:
            for group in wrapper.optimizer.param_groups:
                for key in ("lr", "initial_lr"):
                    if key in group:
                        group[key] *= factor
        for scheduler in _flat_schedulers(self.param_schedulers):
            if getattr(scheduler, "param_name", None) == "lr":
                scheduler.base_values = [v * factor for v in scheduler.base_values]
                scheduler._last_value = [v * factor for v in scheduler._last_value]

    def _describe_change(self, old: TrainProgress, new: TrainProgress, old_lrs: str) -> str:
        auto_scale_lr = self.auto_scale_lr or {}
        if auto_scale_lr.get("enable", False):
            why = f"auto_scale_lr, base batch {auto_scale_lr.get('base_batch_size')}"
        else:
            why = "auto_scale_lr off: the lr does not follow the batch; --auto-scale-lr scales it"
        line = (
            f"resuming with another setup: world size {old.world_size} -> {new.world_size}, "
            f"batch per process {old.batch_size} -> {new.batch_size}, effective batch "
            f"{old.effective_batch_size} -> {new.effective_batch_size}, "
            f"lr {old_lrs} -> {_format_lrs(self.optim_wrapper)} ({why})"
        )
        if old.mid_epoch:
            rest = old.dataset_length - old.epoch_samples_seen
            line += (
                f"; the {rest} images epoch {old.epoch + 1} has not yet seen are split over "
                f"{new.world_size} process{'es' if new.world_size > 1 else ''}"
            )
        return line

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        super().save_checkpoint(out_dir, filename, *args, **kwargs)
        saved = osp.join(out_dir, filename)
        # Best-metric checkpoints also come through here; only the one the
        # CheckpointHook records as latest becomes last.pth.
        if osp.isfile(saved) and self.message_hub.get_info("last_ckpt") == saved:
            atomic_publish(saved, osp.join(self.work_dir, LAST_CHECKPOINT_NAME))


def build_runner(cfg) -> mmengine.runner.Runner:
    """The runner a config asks for: its ``runner_type`` if set, else :class:`Runner`."""
    if "runner_type" in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def close_process_group() -> None:
    """Wait for every process, then shut the process group down; nothing without one.

    ``tools/train.py`` and ``tools/eval.py`` call it when their run is over. Why: a
    process that finishes first and exits with the group still open destroys gloo's
    connection threads while they are joinable, and the C++ runtime aborts it
    ("terminate called without an active exception", SIGABRT; seen in 2-process CPU
    runs under torchrun, about one run in three on an AMD EPYC), failing a run that
    trained to the end. torch asks programs to call ``destroy_process_group`` before
    they exit.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
