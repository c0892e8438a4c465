"""TaskConcatDataset + PerTaskSampler + TaskQuotaBatchSampler: every batch holds every task,
epochs cover every sample, processes get disjoint shards, the seed and epoch decide the order."""

from collections import Counter

import pytest
from mmengine.registry import DefaultScope
from multitask_toy import config_on_data

from mtvision.data import PerTaskSampler, TaskConcatDataset, TaskQuotaBatchSampler
from mtvision.data.task_sampling import split_batch
from mtvision.engine import Runner
from mtvision.errors import ConfigError

CONFIG = "configs/_base_/datasets/multitask_coco_voc_imagenet.py"
SIZES = {"classification": 10, "detection": 4, "segmentation": 7}


def concat(sizes=SIZES):
    # Any sized, indexable datasets work; ranges keep the index arithmetic visible.
    return TaskConcatDataset({task: range(size) for task, size in sizes.items()})


def batches(
    dataset, batch_size=6, ratios=None, epoch=0, seed=0, rank=0, world_size=1, shuffle=True
):
    sampler = PerTaskSampler(dataset, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    return list(TaskQuotaBatchSampler(sampler, batch_size, ratios))


def test_split_batch_by_largest_remainder():
    assert split_batch(24, dict(a=1, b=1, c=1)) == dict(a=8, b=8, c=8)
    assert split_batch(10, dict(a=1, b=1, c=1)) == dict(a=4, b=3, c=3)
    assert split_batch(7, dict(a=2, b=1)) == dict(a=5, b=2)
    assert split_batch(5, dict(a=0.1, b=0.9)) == dict(a=1, b=4)
    with pytest.raises(ConfigError, match=r"batch_size 2 .* gives no sample of \['c'\]"):
        split_batch(2, dict(a=1, b=1, c=1))
    with pytest.raises(ConfigError, match="ratios must be positive"):
        split_batch(4, dict(a=1, b=0))


def test_task_ranges_and_metainfo():
    dataset = concat()
    assert len(dataset) == 21
    assert [dataset.task_range(t) for t in SIZES] == [range(0, 10), range(10, 14), range(14, 21)]
    assert [dataset.task_of(i) for i in (0, 9, 10, 13, 14, 20)] == [
        "classification",
        "classification",
        "detection",
        "detection",
        "segmentation",
        "segmentation",
    ]
    assert dataset.metainfo == {"tasks": {task: {} for task in SIZES}}
    assert dataset[12] == 2  # sample 2 of the detection dataset


def test_every_batch_holds_every_task_and_an_epoch_covers_every_sample():
    dataset = concat()
    epoch = batches(dataset, batch_size=6)
    # classification needs the most batches: 10 samples, 2 per batch
    assert len(epoch) == 5 and all(len(batch) == 6 for batch in epoch)
    for batch in epoch:
        assert Counter(dataset.task_of(i) for i in batch) == dict(
            classification=2, detection=2, segmentation=2
        )
    drawn = [i for batch in epoch for i in batch]
    for task in SIZES:
        assert set(dataset.task_range(task)) <= set(drawn)
    # the largest task is drawn exactly once; the others run several passes
    assert sorted(i for i in drawn if i < 10) == list(range(10))
    assert Counter(i for i in drawn if 10 <= i < 14).most_common()[-1][1] >= 2


def test_ratios_set_the_quotas():
    dataset = concat()
    epoch = batches(
        dataset, batch_size=8, ratios=dict(classification=2, detection=1, segmentation=1)
    )
    assert len(epoch) == 4  # max(ceil(10 / 4), ceil(4 / 2), ceil(7 / 2)) = max(3, 2, 4)
    for batch in epoch:
        assert Counter(dataset.task_of(i) for i in batch) == dict(
            classification=4, detection=2, segmentation=2
        )
    with pytest.raises(ConfigError, match=r"unknown \['depth'\]; missing \['segmentation'\]"):
        batches(dataset, ratios=dict(classification=1, detection=1, depth=1))


def test_two_processes_get_disjoint_shards_that_cover_each_task():
    dataset = concat(dict(classification=10, detection=4, segmentation=7))
    per_rank = [batches(dataset, batch_size=3, rank=r, world_size=2, epoch=3) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 5  # ceil(ceil(10 / 2) / 1)
    for task in SIZES:
        shard = PerTaskSampler(dataset, seed=0, world_size=2, rank=0).shard_size(task)
        firsts = [
            [i for batch in rank_batches for i in batch if dataset.task_of(i) == task][:shard]
            for rank_batches in per_rank
        ]
        assert set(firsts[0]) | set(firsts[1]) == set(dataset.task_range(task))
        if len(dataset.task_range(task)) % 2 == 0:
            assert not set(firsts[0]) & set(firsts[1])  # disjoint
        else:  # rounded up like mmengine's DefaultSampler: one index on both
            assert len(set(firsts[0]) & set(firsts[1])) == 1


def test_order_follows_seed_and_epoch():
    dataset = concat()
    assert batches(dataset, seed=3) == batches(dataset, seed=3)
    assert batches(dataset, seed=3) != batches(dataset, seed=4)
    first, second = batches(dataset, epoch=0), batches(dataset, epoch=1)
    assert first != second
    assert sorted(i for b in first for i in b if i < 10) == sorted(
        i for b in second for i in b if i < 10
    )
    assert batches(dataset, shuffle=False)[0] == [0, 1, 10, 11, 14, 15]


def test_wrong_pairings_are_config_errors():
    with pytest.raises(ConfigError, match="PerTaskSampler samples a TaskConcatDataset"):
        PerTaskSampler(range(5), seed=0)
    with pytest.raises(ConfigError, match="TaskQuotaBatchSampler draws per-task streams"):
        TaskQuotaBatchSampler(range(5), 4)
    with pytest.raises(ConfigError, match="datasets must map task names"):
        TaskConcatDataset([range(3)])
    with pytest.raises(ConfigError, match="the 'detection' dataset .* is empty"):
        TaskConcatDataset(dict(classification=range(3), detection=range(0)))


def shipped_train_loader(tiny_shapes, **loader):
    """The shipped interleaved train loader, on the tiny shapes tree (same layouts)."""
    cfg = config_on_data(CONFIG, tiny_shapes, demo_root="data/")
    datasets = cfg.train_dataloader.dataset.datasets
    datasets.segmentation.split = "train"  # the tiny tree has no SBD train_aug list
    datasets.segmentation.classes = (
        "background",
        "circle",
        "square",
        "triangle",
        "star",
        "cross",
        "hexagon",
    )
    return dict(cfg.train_dataloader, num_workers=0, persistent_workers=False, **loader)


def test_shipped_config_builds_interleaved_batches_through_mmengine(tiny_shapes):
    with DefaultScope.overwrite_default_scope("mtvision"):
        loader = Runner.build_dataloader(shipped_train_loader(tiny_shapes, batch_size=6), seed=0)
    assert isinstance(loader.batch_sampler, TaskQuotaBatchSampler)
    assert loader.batch_sampler.quotas == dict(classification=2, detection=2, segmentation=2)
    assert len(loader) == 6  # 12 images per task, 2 per batch
    seen = Counter()
    for batch in loader:
        kinds = Counter(
            next(k for k in ("label", "boxes", "mask") if k in sample)
            for sample in batch["data_samples"]
        )
        assert kinds == dict(label=2, boxes=2, mask=2)
        assert all(tuple(image.shape) == (3, 320, 320) for image in batch["inputs"])
        seen.update(sample["meta"]["img_path"] for sample in batch["data_samples"])
    assert len(seen) == 36 and set(seen.values()) == {1}


def toy_runner(tiny_shapes, work_dir, train_cfg, **extra) -> Runner:
    """The toy multi-task model on the shipped interleaved loader (images cut to 32 px),
    recording every batch (RecordBatchesHook)."""
    from mtvision.engine.config import RUNNER_KEYS

    loader = shipped_train_loader(tiny_shapes, batch_size=6)
    small = dict(type="Albumentations", transforms=[dict(type="Resize", height=32, width=32)])
    for part in loader["dataset"]["datasets"].values():
        part.pipeline = [step for step in part.pipeline if step.type != "Albumentations"]
        part.pipeline.insert(-1, small)
    cfg = dict(
        model=dict(
            type="ToyMultiTaskModel",
            num_classes=dict(classification=6, detection=6, segmentation=21),
        ),
        train_dataloader=loader,
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        custom_hooks=[dict(type="RecordBatchesHook")],
        work_dir=str(work_dir),
        experiment_name=f"toy_{work_dir.parent.name}_{work_dir.name}",
        default_scope="mtvision",
        randomness=dict(seed=0),
        log_level="WARNING",
        **extra,
    )
    return Runner(**{key: value for key, value in cfg.items() if key in RUNNER_KEYS})


def recorded_batches(runner) -> list:
    (hook,) = [h for h in runner.hooks if type(h).__name__ == "RecordBatchesHook"]
    return hook.batches


def test_iteration_based_training_reshuffles_each_pass(tiny_shapes, tmp_path):
    """IterBasedTrainLoop restarts the loader when it runs out and calls set_epoch on
    the batch sampler's sampler: the second pass is a new order, still interleaved."""
    runner = toy_runner(tiny_shapes, tmp_path, dict(type="IterBasedTrainLoop", max_iters=12))
    runner.train()
    assert runner.train_dataloader.batch_sampler.sampler.epoch == 1
    batches = recorded_batches(runner)
    passes = [[path for _, batch in batches[i : i + 6] for path, _ in batch] for i in (0, 6)]
    assert sorted(passes[0]) == sorted(passes[1]) and passes[0] != passes[1]
    for _, batch in batches:
        assert Counter(kind for _, kinds in batch for kind in kinds) == dict(
            label=2, boxes=2, mask=2
        )


def test_resuming_at_an_epoch_end_continues_the_same_order(tiny_shapes, tmp_path):
    epochs = dict(type="EpochBasedTrainLoop", max_epochs=2)
    whole = toy_runner(tiny_shapes, tmp_path / "whole", epochs)
    whole.train()
    first = toy_runner(tiny_shapes, tmp_path / "split", dict(epochs, max_epochs=1))
    first.train()
    resumed = toy_runner(tiny_shapes, tmp_path / "split", epochs, resume=True)
    resumed.train()
    assert resumed.iter == whole.iter == 12
    assert recorded_batches(resumed) == recorded_batches(whole)[6:]  # epoch 2, batch by batch

    # A checkpoint from the middle of an epoch: the runner's mid-epoch resume needs a
    # ResumableSampler, which the interleaved batches do not go through.
    middle = toy_runner(
        tiny_shapes,
        tmp_path / "middle",
        dict(epochs, max_epochs=1),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=4, by_epoch=False)),
    )
    middle.train()
    with pytest.raises(ConfigError, match="written in the middle of epoch 1"):
        toy_runner(
            tiny_shapes,
            tmp_path / "middle",
            epochs,
            resume=True,
            load_from=str(tmp_path / "middle" / "iter_4.pth"),
        ).train()
