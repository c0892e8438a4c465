"""A ``DefaultSampler`` that can start in the middle of an epoch, with any number of processes.

mmengine's ``EpochBasedTrainLoop`` restores ``epoch`` and ``iter`` on resume
but walks the resumed epoch from its first batch again: a checkpoint written
by iteration (``CheckpointHook(by_epoch=False)``) in the middle of an epoch
would see the epoch's first part twice. :class:`ResumableSampler` is
mmengine's :class:`~mmengine.dataset.DefaultSampler` with one addition:
:meth:`resume_at` makes the next pass over the resumed epoch skip the samples
already consumed, without loading them.

Why an offset into one list is enough: for epoch ``e`` the ``DefaultSampler``
shuffles the ``N`` indices with seed ``seed + e`` into ``P``, pads ``P`` by
repeating its head to a multiple of the world size ``W`` and gives process
``r`` the entries ``r, r + W, r + 2W, ...``. After ``k`` batches of ``B`` on
every process, the samples consumed by all processes together are exactly
``P[:k * B * W]``, whatever ``W`` and ``B`` were. The rest of the epoch is
``P[S:]``; it is padded and dealt out the same way for the world size of the
resumed run, so a run resumed with another number of processes covers
exactly the images the epoch has not yet seen (plus, as always, the few
repeated ones that make the count divisible). With the same world size the
indices are identical to those of the uninterrupted run.

Source: mmengine ``mmengine/dataset/sampler.py`` (``DefaultSampler``), whose
order this reproduces exactly when no offset is set.
"""

import math
from collections.abc import Iterator, Sized

import torch
from mmengine.dataset import DefaultSampler

from mtvision.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class ResumableSampler(DefaultSampler):
    """:class:`~mmengine.dataset.DefaultSampler` that can resume mid-epoch.

    Args:
        dataset: the dataset (only its length is used).
        shuffle: shuffle with ``seed + epoch`` (as ``DefaultSampler``).
        seed: shuffling seed, identical on every process.
        round_up: pad to a multiple of the world size (as ``DefaultSampler``).
    """

    def __init__(
        self, dataset: Sized, shuffle: bool = True, seed: int | None = None, round_up: bool = True
    ) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        self._resume_epoch: int | None = None
        self._resume_samples_seen = 0

    def resume_at(self, epoch: int, samples_seen: int) -> None:
        """Start epoch ``epoch`` after its first ``samples_seen`` samples (all processes together).

        ``samples_seen`` counts positions in the epoch's shuffled order, as
        recorded in a checkpoint's ``meta['train_progress']``; it applies to
        that epoch only and is forgotten when another epoch is set.

        Raises:
            ValueError: ``samples_seen`` is negative.
        """
        if samples_seen < 0:
            raise ValueError(f"samples_seen must be >= 0, got {samples_seen}")
        self._resume_epoch = epoch
        self._resume_samples_seen = samples_seen

    @property
    def start(self) -> int:
        """Samples of the current epoch skipped at its start (0 unless resumed into it)."""
        return self._resume_samples_seen if self.epoch == self._resume_epoch else 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self._resume_epoch:
            self._resume_epoch, self._resume_samples_seen = None, 0
        super().set_epoch(epoch)

    def _epoch_order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            return torch.randperm(len(self.dataset), generator=generator).tolist()
        return list(range(len(self.dataset)))

    def _remaining_length(self, start: int) -> int:
        """Length of the epoch after ``start`` samples, padded as ``DefaultSampler`` pads."""
        remaining = max(len(self.dataset) - start, 0)
        if self.round_up:
            return math.ceil(remaining / self.world_size) * self.world_size
        return remaining

    def samples_after(self, samples_seen: int) -> int:
        """Samples this process yields in an epoch resumed after ``samples_seen``."""
        return max(
            math.ceil((self._remaining_length(samples_seen) - self.rank) / self.world_size), 0
        )

    def __iter__(self) -> Iterator[int]:
        order = self._epoch_order()
        rest = order[self.start :]
        padded_length = self._remaining_length(self.start)
        if padded_length > len(rest):
            # DefaultSampler's padding: the epoch's order repeated from its head.
            repeats = (padded_length - len(rest)) // len(order) + 1
            rest = rest + (order * repeats)[: padded_length - len(rest)]
        return iter(rest[self.rank : padded_length : self.world_size])

    def __len__(self) -> int:
        """Samples this process yields in the current (possibly resumed) epoch."""
        return self.samples_after(self.start)
