"""The composing model (MultiTaskModel, mobilenet_v2_multitask's config) on the multi-task
data configs: joined and interleaved batches train all three heads, and the multi-task
loops score each head on its own data."""

import math
from pathlib import Path

import pytest

from mtvision.engine import Runner, load_config
from mtvision.engine.config import RUNNER_KEYS

REPO = Path(__file__).resolve().parents[1]
SEG_CLASSES = ("background", "circle", "square", "triangle", "star", "cross", "hexagon")
HEAD_METRICS = ("classification/top1", "coco/bbox_mAP", "voc/mIoU")

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def recipe(tmp_path: Path, data_config: str, body: str) -> Path:
    """A user's recipe: the multi-task model, a multi-task data config, the runtime."""
    path = tmp_path / "recipe.py"
    bases = [
        str(REPO / "configs/_base_/models/multitask_mobilenet_v2.py"),
        str(REPO / f"configs/_base_/datasets/{data_config}.py"),
        str(REPO / "configs/_base_/default_runtime.py"),
    ]
    path.write_text(
        f"""_base_ = {bases!r}
model = dict(
    backbone=dict(width_mult=0.35),
    heads=dict(
        classification=dict(num_classes=6),
        detection=dict(num_classes=6),
        segmentation=dict(num_classes=7),
    ),
)
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=1, val_interval=1)
optim_wrapper = dict(optimizer=dict(type="AdamW", lr=1e-3))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
log_level = "WARNING"
{body}"""
    )
    return path


def run(path: Path, work_dir: Path):
    """Train (with validation) and test, as tools/train.py and tools/eval.py would, built
    with ``Runner(**cfg)`` to skip mmengine's config pretty-printing (seconds here)."""
    cfg = load_config(str(path))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f"{work_dir.parent.name}_{work_dir.name}"
    runner = Runner(**{key: value for key, value in cfg.items() if key in RUNNER_KEYS})
    runner.train()
    return runner, runner.test()


def parts(root: Path, split: str) -> str:
    coco = "train2017" if split == "train" else "val2017"
    return f"""dict(
        detection=dict(data_root="{root}/coco/", ann_file="annotations/instances_{coco}.json",
                       data_prefix=dict(img="{coco}/")),
        classification=dict(data_root="{root}/imagenet"),
        segmentation=dict(data_root="{root}/VOCdevkit/VOC2012"),
    )"""


def test_joined_shapes_train_every_head_and_score_each(tiny_shapes, tmp_path):
    loader = "num_workers=0, persistent_workers=False"
    ann = f"{tiny_shapes}/coco/annotations/instances_val2017.json"
    evaluator = f"dict(shapes=dict(detection=dict(ann_file={ann!r})))"
    val = f"dict(shapes=dict({loader}, dataset=dict(datasets={parts(tiny_shapes, 'val')})))"
    path = recipe(
        tmp_path,
        "multitask_shapes",
        f"""train_dataloader = dict(batch_size=4, {loader}, dataset=dict(datasets={parts(tiny_shapes, "train")}))
val_dataloader = {val}
test_dataloader = {val}
val_evaluator = {evaluator}
test_evaluator = {evaluator}
""",
    )
    runner, metrics = run(path, tmp_path / "work")
    assert runner.iter == 3  # 12 joined images, 4 per batch
    scalars = runner.message_hub.log_scalars
    losses = [name for name in scalars if name.startswith("train/") and "loss" in name]
    for head in ("classification", "detection", "segmentation"):
        assert any(name.startswith(f"train/{head}.loss") for name in losses), (head, losses)
        # every sample annotates every head: each loss is a real, non-zero number
        for name in (n for n in losses if n.startswith(f"train/{head}.")):
            value = scalars[name].current()
            assert math.isfinite(value) and value > 0, name
    for name in HEAD_METRICS:
        assert 0 <= metrics[name] <= 1, name
        assert f"val/{name}" in scalars
    assert metrics["classification/top5"] >= metrics["classification/top1"]


def test_interleaved_datasets_train_every_head_and_score_each_on_its_own(tiny_shapes, tmp_path):
    path = recipe(
        tmp_path,
        "multitask_coco_voc_imagenet",
        f"""train_dataloader = dict(
    batch_size=3, num_workers=0, persistent_workers=False,
    dataset=dict(datasets=dict(
        classification=dict(data_root="{tiny_shapes}/imagenet"),
        detection=dict(data_root="{tiny_shapes}/coco/"),
        segmentation=dict(data_root="{tiny_shapes}/VOCdevkit/VOC2012", split="train",
                          classes={SEG_CLASSES!r}),
    )),
)
_loader = dict(num_workers=0, persistent_workers=False)
_val = dict(
    imagenet=dict(_loader, dataset=dict(data_root="{tiny_shapes}/imagenet")),
    coco=dict(_loader, dataset=dict(data_root="{tiny_shapes}/coco/")),
    voc=dict(_loader, dataset=dict(data_root="{tiny_shapes}/VOCdevkit/VOC2012",
                                   classes={SEG_CLASSES!r})),
)
val_dataloader = _val
test_dataloader = _val
_evaluator = dict(coco=dict(detection=dict(ann_file="{tiny_shapes}/coco/annotations/instances_val2017.json")))
val_evaluator = _evaluator
test_evaluator = _evaluator
""",
    )
    runner, metrics = run(path, tmp_path / "work")
    # 12 images per task, one of each per batch: 12 iterations, every one with all three
    assert runner.iter == 12
    assert runner.train_dataloader.batch_sampler.quotas == dict(
        classification=1, detection=1, segmentation=1
    )
    for name in HEAD_METRICS:
        assert 0 <= metrics[name] <= 1, name
    assert {name.split("/")[0] for name in metrics} == {"classification", "coco", "voc"}
    loop = runner.test_loop
    assert [(entry.name, entry.heads) for entry in loop.entries] == [
        ("imagenet", ("classification",)),
        ("coco", ("detection",)),
        ("voc", ("segmentation",)),
    ]
    assert runner.model.active_head_names == ("classification", "detection", "segmentation")
