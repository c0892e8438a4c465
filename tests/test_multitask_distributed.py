"""Multi-task data and evaluation under torchrun (2 CPU processes, gloo).

Training interleaves three per-task datasets (TaskConcatDataset + PerTaskSampler +
TaskQuotaBatchSampler): every batch of every process holds every task, the
processes draw disjoint shards, and each epoch is shuffled anew. Evaluation runs
three entries (MultiTaskTestLoop) and must give the single-process metrics.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from engine_toy import load_tool
from multitask_toy import ToyMultiTaskModel

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
NUM_CLASSES = dict(classification=6, detection=6, segmentation=7)
SEG_CLASSES = ("background", "circle", "square", "triangle", "star", "cross", "hexagon")


def torchrun(tool: str, *args: str, timeout: float = 240) -> str:
    """``torchrun --standalone --nproc_per_node=2 tools/<tool>.py ... --launcher pytorch``; its stdout."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(REPO / "tools" / f"{tool}.py"), *args, "--launcher", "pytorch"]
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


def datasets_text(root: Path, split: str, pipelines: dict, extra: str = "") -> str:
    """The three per-task datasets of the tiny tree, as config text."""
    coco = "train2017" if split == "train" else "val2017"
    return f"""dict(
        classification=dict(type="ImageNetFolder", data_root="{root}/imagenet", split="{split}",
                            pipeline={pipelines["classification"]}{extra}),
        detection=dict(type="CocoDetection", data_root="{root}/coco/",
                       ann_file="annotations/instances_{coco}.json", data_prefix=dict(img="{coco}/"),
                       pipeline={pipelines["detection"]}{extra}),
        segmentation=dict(type="VOCSegmentation", data_root="{root}/VOCdevkit/VOC2012", split="{split}",
                          classes={SEG_CLASSES!r}, pipeline={pipelines["segmentation"]}{extra}),
    )"""


RESIZE = 'dict(type="Albumentations", transforms=[dict(type="Resize", height=48, width=48)])'
PIPELINES = dict(
    classification=f'[dict(type="LoadImage"), {RESIZE}, dict(type="PackInputs")]',
    detection=f'[dict(type="LoadImage"), {RESIZE}, dict(type="PackInputs")]',
    segmentation=f'[dict(type="LoadImage"), dict(type="LoadMask"), {RESIZE}, dict(type="PackInputs")]',
)
TEST_PIPELINES = dict(
    PIPELINES,
    segmentation='[dict(type="LoadImage"), dict(type="LoadMask"), dict(type="PackInputs")]',
)


def write_config(path: Path, root: Path) -> str:
    loader = 'num_workers=0, collate_fn=dict(type="mtvision.collate_samples")'
    # 5 of the 6 val images per entry: over 2 processes the sampler pads a sixth,
    # which the metrics must drop again.
    test_sets = datasets_text(root, "val", TEST_PIPELINES, extra=", indices=5, test_mode=True")
    path.write_text(
        f"""custom_imports = dict(imports=["multitask_toy"], allow_failed_imports=False)
default_scope = "mtvision"
model = dict(type="ToyMultiTaskModel", num_classes={NUM_CLASSES!r}, oracle=True, corrupt_every=3)
train_dataloader = dict(
    batch_size=6, {loader},
    sampler=dict(type="PerTaskSampler", shuffle=True),
    batch_sampler=dict(type="TaskQuotaBatchSampler"),
    dataset=dict(type="TaskConcatDataset", datasets={datasets_text(root, "train", PIPELINES)}),
)
_sets = {test_sets}
_test = dict(batch_size=2, {loader}, sampler=dict(type="DefaultSampler", shuffle=False))
test_dataloader = dict(
    imagenet=dict(_test, dataset=_sets["classification"]),
    coco=dict(_test, dataset=_sets["detection"]),
    voc=dict(_test, dataset=_sets["segmentation"]),
)
test_evaluator = dict(
    imagenet=dict(classification=dict(type="TopKAccuracy", topk=(1, 5), prefix="classification")),
    coco=dict(detection=dict(type="CocoMetric", ann_file="{root}/coco/annotations/instances_val2017.json")),
    voc=dict(segmentation=dict(type="MeanIoU", prefix="voc")),
)
test_cfg = dict(type="MultiTaskTestLoop")
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=2)
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.01))
default_hooks = dict(
    sampler_seed=dict(type="DistSamplerSeedHook"),
    checkpoint=dict(type="CheckpointHook", interval=2),
    logger=dict(type="LoggerHook", interval=1),
)
custom_hooks = [dict(type="RecordBatchesHook")]
env_cfg = dict(dist_cfg=dict(backend="nccl", timeout=120))
randomness = dict(seed=0)
log_level = "WARNING"
"""
    )
    return str(path)


@pytest.fixture(scope="module")
def config(tiny_shapes, tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("multitask_ddp") / "multitask.py", tiny_shapes)


def test_two_processes_train_on_disjoint_interleaved_batches(config, tmp_path):
    work_dir = tmp_path / "work"
    torchrun("train", config, "--work-dir", str(work_dir))
    ranks = [json.loads((work_dir / f"batches_rank{r}.json").read_text()) for r in (0, 1)]
    # 12 images per task, 6 per process per epoch, 2 per batch: 3 batches an epoch
    assert [[epoch for epoch, _ in batches] for batches in ranks] == [[0, 0, 0, 1, 1, 1]] * 2
    for batches in ranks:
        for _, batch in batches:
            assert Counter(kind for _, kinds in batch for kind in kinds) == dict(
                label=2, boxes=2, mask=2
            )
    for epoch in (0, 1):
        for kind in ("label", "boxes", "mask"):
            drawn = [
                [
                    path
                    for e, batch in batches
                    if e == epoch
                    for path, kinds in batch
                    if kind in kinds
                ]
                for batches in ranks
            ]
            assert not set(drawn[0]) & set(drawn[1])  # disjoint shards
            assert len(set(drawn[0]) | set(drawn[1])) == 12  # together: the whole dataset
    # set_epoch reached the sampler: the second epoch is shuffled differently
    orders = [
        [path for e, batch in ranks[0] if e == epoch for path, _ in batch] for epoch in (0, 1)
    ]
    assert orders[0] != orders[1]


def table_values(stdout: str) -> dict[str, float]:
    lines = stdout[stdout.index("metric ") :].splitlines()[1:]
    return {name: float(value) for name, value in (line.split() for line in lines if line.strip())}


def test_two_process_evaluation_equals_one_process(config, tiny_shapes, tmp_path):
    checkpoint = tmp_path / "toy.pth"
    torch.save({"state_dict": ToyMultiTaskModel(NUM_CLASSES).state_dict()}, checkpoint)
    distributed = table_values(
        torchrun("eval", config, str(checkpoint), "--work-dir", str(tmp_path / "ddp"))
    )
    single = load_tool("eval").main(
        [config, str(checkpoint), "--work-dir", str(tmp_path / "single")]
        + ["--cfg-options", f"experiment_name={tmp_path.name}_single"]
    )
    assert set(distributed) == set(single)
    for name, value in single.items():
        assert distributed[name] == pytest.approx(value, abs=1e-4), name  # the table's 4 decimals
    # the oracle's known mistakes on the 5 images (ImageFolder order: by class, then path)
    images = sorted((p.parent.name, str(p)) for p in (tiny_shapes / "imagenet/val").rglob("*.jpg"))[
        :5
    ]
    wrong = sum(int(Path(path).stem[-6:]) % 3 == 0 for _, path in images)
    assert single["classification/top1"] == pytest.approx(1 - wrong / 5)
