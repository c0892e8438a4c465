"""Interleaving per-task datasets so that every batch, hence every optimiser step, sees every task.

Two pieces, both built by mmengine's ``Runner.build_dataloader`` from the
dataloader config (registered in ``DATA_SAMPLERS``):

- :class:`PerTaskSampler` (``sampler=``) shuffles each task's dataset of a
  :class:`~mtvision.data.TaskConcatDataset` on its own and gives each process
  its shard, from one seed shared by all processes and the epoch (mmengine
  calls ``set_epoch`` before every epoch: ``DistSamplerSeedHook`` in
  epoch-based training, the infinite loader of ``IterBasedTrainLoop``).
- :class:`TaskQuotaBatchSampler` (``batch_sampler=``) fills every batch with a
  fixed number of samples of each task (``batch_size`` split by ``ratios``),
  drawing from the sampler's per-task streams.

An epoch ends when every task's samples have all been drawn at least once:
the task that needs the most batches (its shard size over its quota) sets the
epoch length; the other tasks start a new, differently shuffled pass whenever
theirs runs out. mmdet's ``MultiSourceSampler`` fixes per-source shares of a
batch the same way (with an infinite stream and no epochs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mtvision.errors import ConfigError
from mtvision.registry import DATA_SAMPLERS

__all__ = ["PerTaskSampler", "TaskQuotaBatchSampler", "split_batch"]


@DATA_SAMPLERS.register_module()
class PerTaskSampler(Sampler[int]):
    """Each task's samples shuffled and sharded over the processes on their own.

    Pass ``p`` of task ``t`` in epoch ``e`` is a permutation of ``t``'s
    samples drawn from ``numpy.random.default_rng([seed, e, t, p])`` (or their
    order, without ``shuffle``), repeated at its start up to a multiple of the
    number of processes (as mmengine's ``DefaultSampler`` rounds up), of which
    process ``rank`` takes every ``world_size``-th index from ``rank`` on: the
    processes' shards are disjoint and together cover the task.

    Iterating it alone yields this process's shard of pass 0 of every task,
    task after task; :class:`TaskQuotaBatchSampler` draws from
    :meth:`task_stream` instead.

    Args:
        dataset: a :class:`~mtvision.data.TaskConcatDataset` (anything with
            ``tasks`` and ``task_range(task)``).
        shuffle: shuffle each pass.
        seed: identical on every process; ``None`` draws one and shares it
            (``mmengine.dist.sync_random_seed``). mmengine passes the config's
            ``randomness.seed``.
        rank, world_size: this process and the number of processes; ``None``
            asks ``torch.distributed`` (as ``torch.utils.data.DistributedSampler``).
    """

    def __init__(
        self,
        dataset,
        shuffle: bool = True,
        seed: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if not (hasattr(dataset, "tasks") and hasattr(dataset, "task_range")):
            raise ConfigError(
                f"PerTaskSampler samples a TaskConcatDataset (per-task datasets), got "
                f"{type(dataset).__name__}"
            )
        dist_rank, dist_world_size = get_dist_info()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world_size if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got {self.rank}, {self.world_size}")
        self.dataset = dataset
        self.tasks: tuple[str, ...] = tuple(dataset.tasks)
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the next iteration as epoch ``epoch`` (mmengine calls it)."""
        self.epoch = epoch

    def shard_size(self, task: str) -> int:
        """Indices per pass of ``task`` on each process (the same on all)."""
        return math.ceil(len(self.dataset.task_range(task)) / self.world_size)

    def pass_indices(self, task: str, pass_index: int = 0) -> list[int]:
        """This process's shard of pass ``pass_index`` of ``task`` in the current epoch.

        Returns dataset indices (into the concatenation), ``shard_size(task)`` of them.
        """
        indices = self.dataset.task_range(task)
        if self.shuffle:
            key = [self.seed % 2**63, self.epoch, self.tasks.index(task), pass_index]
            order = np.random.default_rng(key).permutation(len(indices))
        else:
            order = np.arange(len(indices))
        padded = np.resize(order, self.shard_size(task) * self.world_size)
        return (padded[self.rank :: self.world_size] + indices.start).tolist()

    def task_stream(self, task: str) -> Iterator[int]:
        """This process's endless stream of ``task``'s indices: pass 0, pass 1, ..."""
        for pass_index in itertools.count():
            yield from self.pass_indices(task, pass_index)

    def __iter__(self) -> Iterator[int]:
        for task in self.tasks:
            yield from self.pass_indices(task)

    def __len__(self) -> int:
        return sum(self.shard_size(task) for task in self.tasks)


def split_batch(batch_size: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Per-task sample counts that sum to ``batch_size``, proportional to ``ratios``.

    Largest-remainder rounding (ties go to the task listed first), e.g.
    ``split_batch(10, dict(a=1, b=1, c=1)) == dict(a=4, b=3, c=3)``.

    Raises:
        ConfigError: a ratio that is not positive, or a task that would get no
            sample (``batch_size`` too small for the ratios).
    """
    bad = {task: ratio for task, ratio in ratios.items() if not ratio > 0}
    if bad or not ratios:
        raise ConfigError(
            f"TaskQuotaBatchSampler: ratios must be positive numbers, got {dict(ratios)}"
        )
    total = sum(ratios.values())
    exact = {task: batch_size * ratio / total for task, ratio in ratios.items()}
    quotas = {task: math.floor(share) for task, share in exact.items()}
    by_remainder = sorted(ratios, key=lambda task: quotas[task] - exact[task])  # stable
    for task in by_remainder[: batch_size - sum(quotas.values())]:
        quotas[task] += 1
    starved = [task for task, quota in quotas.items() if quota == 0]
    if starved:
        raise ConfigError(
            f"TaskQuotaBatchSampler: batch_size {batch_size} split by ratios {dict(ratios)} "
            f"gives no sample of {starved} per batch; raise batch_size or their ratios"
        )
    return quotas


@DATA_SAMPLERS.register_module()
class TaskQuotaBatchSampler(Sampler[list[int]]):
    """Batches holding a fixed number of samples of every task.

    Every batch is ``quotas[task]`` indices of each task in task order (e.g.
    8 classification, then 8 detection, then 8 segmentation samples), drawn
    from :meth:`PerTaskSampler.task_stream`. ``len`` is the number of batches
    per epoch: ``max over tasks of ceil(shard_size / quota)``, the same on
    every process, so that every sample of every task is drawn at least once
    per epoch (see the module docstring). All batches are full.

    Args:
        sampler: the dataloader's :class:`PerTaskSampler` (mmengine passes it).
        batch_size: samples per batch on each process (mmengine passes the
            dataloader's ``batch_size``).
        ratios: task -> share of the batch (any positive numbers); ``None``
            shares it equally. Split by :func:`split_batch`.

    Raises:
        ConfigError: ``ratios`` naming unknown tasks or missing some, or a
            task left without a sample per batch.
    """

    def __init__(
        self,
        sampler: PerTaskSampler,
        batch_size: int,
        ratios: Mapping[str, float] | None = None,
    ) -> None:
        if not isinstance(sampler, PerTaskSampler):
            raise ConfigError(
                "TaskQuotaBatchSampler draws per-task streams from a PerTaskSampler "
                f"(sampler=dict(type='PerTaskSampler')), got {type(sampler).__name__}"
            )
        tasks = sampler.tasks
        ratios = dict.fromkeys(tasks, 1.0) if ratios is None else dict(ratios)
        unknown = sorted(set(ratios) - set(tasks))
        missing = [task for task in tasks if task not in ratios]
        if unknown or missing:
            raise ConfigError(
                f"TaskQuotaBatchSampler: ratios must name exactly the dataset's tasks {list(tasks)}"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
            )
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.quotas = split_batch(self.batch_size, {task: ratios[task] for task in tasks})

    def __iter__(self) -> Iterator[list[int]]:
        streams = {task: self.sampler.task_stream(task) for task in self.quotas}
        for _ in range(len(self)):
            yield [
                index
                for task, quota in self.quotas.items()
                for index in itertools.islice(streams[task], quota)
            ]

    def __len__(self) -> int:
        return max(
            math.ceil(self.sampler.shard_size(task) / quota) for task, quota in self.quotas.items()
        )
