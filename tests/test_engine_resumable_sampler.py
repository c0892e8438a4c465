"""ResumableSampler: DefaultSampler's order, and a mid-epoch start for any number of processes."""

import itertools

import pytest
from mmengine.dataset import DefaultSampler

from mtvision.engine import ResumableSampler


def make(cls, length, rank, world_size, **kwargs):
    """A sampler of ``cls`` as process ``rank`` of ``world_size`` would build it."""
    sampler = cls(range(length), seed=7, **kwargs)
    # DefaultSampler reads rank and world size from torch.distributed at
    # construction; set them as a process of a larger group would have them.
    sampler.rank, sampler.world_size = rank, world_size
    if sampler.round_up:
        sampler.num_samples = -(-length // world_size)
        sampler.total_size = sampler.num_samples * world_size
    else:
        sampler.num_samples = -(-(length - rank) // world_size)
    return sampler


def epoch_order(length, epoch):
    """The order of ``epoch`` for every process together (one process, no padding)."""
    sampler = make(DefaultSampler, length, 0, 1)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("round_up", [True, False])
@pytest.mark.parametrize(("length", "world_size"), [(24, 1), (24, 2), (25, 2), (10, 3), (2, 4)])
def test_without_offset_it_is_the_default_sampler(length, world_size, round_up):
    for rank, epoch in itertools.product(range(world_size), (0, 3)):
        ours = make(ResumableSampler, length, rank, world_size, round_up=round_up)
        theirs = make(DefaultSampler, length, rank, world_size, round_up=round_up)
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs) == len(list(ours))


def consumed(length, world_size, batch_size, batches, epoch):
    """Indices that ``world_size`` DefaultSampler processes trained on in ``batches`` batches."""
    seen = []
    for rank in range(world_size):
        sampler = make(DefaultSampler, length, rank, world_size)
        sampler.set_epoch(epoch)
        seen += list(sampler)[: batches * batch_size]
    return seen


@pytest.mark.parametrize(
    ("length", "old_world", "batch", "batches", "new_world"),
    [(24, 2, 2, 2, 2), (24, 2, 2, 2, 1), (24, 1, 4, 3, 2), (25, 2, 3, 2, 3), (25, 3, 2, 1, 2)],
)
def test_resumed_epoch_covers_exactly_the_unseen_images(
    length, old_world, batch, batches, new_world
):
    epoch = 1
    seen = consumed(length, old_world, batch, batches, epoch)
    samples_seen = old_world * batch * batches
    rest = []
    for rank in range(new_world):
        sampler = make(ResumableSampler, length, rank, new_world)
        sampler.set_epoch(epoch)
        sampler.resume_at(epoch, samples_seen)
        indices = list(sampler)
        assert len(indices) == len(sampler)
        rest += indices
    unseen = set(range(length)) - set(seen)
    assert unseen <= set(rest)
    assert set(seen) == set(epoch_order(length, epoch)[:samples_seen])
    # Only the padding that makes the count divisible repeats an image.
    assert len(rest) - len(unseen) == (-(length - samples_seen)) % new_world
    if new_world == old_world:
        # Same processes: exactly the rest of the uninterrupted run's lists.
        for rank in range(new_world):
            uninterrupted = make(DefaultSampler, length, rank, new_world)
            uninterrupted.set_epoch(epoch)
            resumed = make(ResumableSampler, length, rank, new_world)
            resumed.set_epoch(epoch)
            resumed.resume_at(epoch, samples_seen)
            assert list(resumed) == list(uninterrupted)[batches * batch :]


def test_offset_applies_to_its_epoch_only():
    sampler = make(ResumableSampler, 24, 0, 2)
    sampler.set_epoch(4)
    sampler.resume_at(4, 20)
    sampler.set_epoch(4)  # DistSamplerSeedHook sets the resumed epoch again
    assert len(sampler) == 2 and sampler.start == 20
    sampler.set_epoch(5)
    assert sampler.start == 0 and len(sampler) == 12
    sampler.set_epoch(4)
    assert sampler.start == 0  # forgotten once another epoch was set


def test_finished_epoch_yields_nothing():
    sampler = make(ResumableSampler, 24, 1, 2)
    sampler.set_epoch(2)
    sampler.resume_at(2, 24)
    assert list(sampler) == [] and len(sampler) == 0


def test_negative_offset_is_refused():
    with pytest.raises(ValueError, match="samples_seen must be >= 0"):
        make(ResumableSampler, 4, 0, 1).resume_at(0, -1)
