"""Where training stands, written into every checkpoint so that a resume can continue it exactly.

mmengine's checkpoint ``meta`` holds ``epoch`` and ``iter``. That does not say
how far into the epoch the data order had got, with how many processes, how
many images each, or whether the learning rate had been scaled for that
batch. :class:`TrainProgressHook` adds those as ``meta['train_progress']``
(:class:`TrainProgress`); :class:`mtvision.engine.Runner` reads them on resume
to skip the part of the epoch already trained on
(:class:`~mtvision.engine.resumable_sampler.ResumableSampler`) and to say and
handle what changed when the number of processes did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from mtvision.registry import HOOKS

PROGRESS_KEY = "train_progress"


@dataclass(frozen=True)
class TrainProgress:
    """The training setup and the position in the data order when a checkpoint was written.

    Attributes:
        world_size: number of training processes.
        batch_size: images per process per iteration.
        lr_scale: factor ``auto_scale_lr`` applied to the config's learning
            rates (effective batch / ``base_batch_size``); 1.0 when it was off.
        by_epoch: the loop counts epochs (``EpochBasedTrainLoop``); when
            False the position below is not used (mmengine's
            ``IterBasedTrainLoop`` replays the order by iteration count).
        iters_per_epoch: iterations of a whole epoch (batches per process).
        dataset_length: images in the training set.
        epoch: the epoch in progress, 0-based, as mmengine counts.
        epoch_samples_seen: positions of that epoch's shuffled order consumed
            by all processes together; 0 at the start of the epoch,
            ``dataset_length`` once its last batch has been trained on.
    """

    world_size: int
    batch_size: int
    lr_scale: float
    by_epoch: bool
    iters_per_epoch: int
    dataset_length: int
    epoch: int
    epoch_samples_seen: int

    @property
    def effective_batch_size(self) -> int:
        """Images per optimizer step, all processes together."""
        return self.world_size * self.batch_size

    @property
    def mid_epoch(self) -> bool:
        """The epoch was started and not finished."""
        return 0 < self.epoch_samples_seen < self.dataset_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> TrainProgress | None:
        """The progress recorded in a checkpoint's ``meta``; ``None`` if it has none."""
        recorded = (meta or {}).get(PROGRESS_KEY)
        if not isinstance(recorded, dict):
            return None
        names = {field.name for field in dataclasses.fields(cls)}
        if not names <= recorded.keys():
            return None
        return cls(**{name: recorded[name] for name in names})


def train_batch_size(dataloader) -> int:
    """Images per process per iteration of a built training ``DataLoader``."""
    if dataloader.batch_size is not None:
        return dataloader.batch_size
    return dataloader.batch_sampler.batch_size


def current_setup(runner) -> dict:
    """The fields of :class:`TrainProgress` that describe this run, not its position."""
    loop = runner.train_loop
    by_epoch = isinstance(loop, EpochBasedTrainLoop)
    return dict(
        world_size=runner.world_size,
        batch_size=train_batch_size(loop.dataloader),
        lr_scale=getattr(runner, "lr_scale", 1.0),
        by_epoch=by_epoch,
        # The loop computed max_iters from the whole epoch's length when it was built.
        iters_per_epoch=loop.max_iters // loop.max_epochs if by_epoch else len(loop.dataloader),
        dataset_length=len(loop.dataloader.dataset),
    )


@HOOKS.register_module()
class TrainProgressHook(Hook):
    """Writes :class:`TrainProgress` into every checkpoint as ``meta['train_progress']``.

    :class:`mtvision.engine.Runner` registers it; configs need not name it.
    """

    priority = "VERY_HIGH"

    def __init__(self) -> None:
        self._epoch_start_iter = 0

    def before_train_epoch(self, runner) -> None:
        self._epoch_start_iter = runner.iter

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint["meta"]
        setup = current_setup(runner)
        loader = runner.train_loop.dataloader
        if meta["epoch"] > runner.epoch:
            # Saved by an epoch-end hook: the next epoch has not started.
            epoch, seen = meta["epoch"], 0
        else:
            epoch = runner.epoch
            # Batches of this pass over the epoch that are done; the pass may
            # itself have started mid-epoch (a resumed run).
            batches = meta["iter"] - self._epoch_start_iter
            if not setup["by_epoch"]:
                seen = 0
            elif batches >= len(loader):
                seen = setup["dataset_length"]
            else:
                # Every process takes its share of the next positions of the
                # epoch's order: after k batches, k * batch * world_size of them.
                start = getattr(loader.sampler, "start", 0)
                seen = start + batches * setup["batch_size"] * setup["world_size"]
        meta[PROGRESS_KEY] = TrainProgress(**setup, epoch=epoch, epoch_samples_seen=seen).to_dict()
