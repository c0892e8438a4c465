"""MultiTaskValLoop / MultiTaskTestLoop: every head scored on its own data, one metrics dict.

An oracle model (tests/multitask_toy.py) predicts from the ground truth and
gets a known third of the images wrong, so the metrics have values computed
here independently; the joined synthetic set (one entry, three metrics) and
the same images as three per-task datasets (three entries) must agree.
"""

import copy
import json
import time

import numpy as np
import pytest
from engine_toy import load_tool
from multitask_toy import config_on_data
from PIL import Image

from mtvision.data.image_io import load_image
from mtvision.engine import MultiTaskTestLoop, Runner
from mtvision.engine.config import RUNNER_KEYS
from mtvision.errors import ConfigError
from mtvision.evaluation.coco_metric import evaluate_bbox
from mtvision.evaluation.miou_metric import scores_from_confusion

JOINED = "configs/_base_/datasets/multitask_shapes.py"
PER_TASK = "configs/_base_/datasets/multitask_coco_voc_imagenet.py"
SEG_CLASSES = ("background", "circle", "square", "triangle", "star", "cross", "hexagon")
NUM_CLASSES = dict(classification=6, detection=6, segmentation=7)
CORRUPT_EVERY = 3  # the oracle gets stems 0 and 3 of the 6 val images wrong


def runner_config(root, work_dir, config=JOINED, corrupt_every=CORRUPT_EVERY):
    """A shipped data config on the tiny tree, with the oracle model, as a Runner config."""
    cfg = config_on_data(config, root, demo_root="data/demo/" if config == JOINED else "data/")
    if config == PER_TASK:
        cfg.val_dataloader.voc.dataset.classes = SEG_CLASSES
    for entry in cfg.val_dataloader.values():
        entry.update(num_workers=0, persistent_workers=False)
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
    cfg.update(
        model=dict(
            type="ToyMultiTaskModel",
            num_classes=NUM_CLASSES,
            oracle=True,
            corrupt_every=corrupt_every,
        ),
        custom_imports=dict(imports=["multitask_toy"], allow_failed_imports=False),
        work_dir=str(work_dir),
        experiment_name=f"multitask_{time.time_ns()}",  # mmengine's instances are per name
        log_level="WARNING",
        randomness=dict(seed=0),
    )
    for key in ("train_dataloader", "train_parts", "val_parts"):
        cfg.pop(key, None)
    return cfg


def build(cfg) -> Runner:
    """``Runner(**cfg)``: as ``Runner.from_cfg`` but without a config to pretty-print
    three times (mmengine formats it with yapf, seconds for these nested configs)."""
    return Runner(**{key: value for key, value in cfg.items() if key in RUNNER_KEYS})


def run_test(cfg):
    runner = build(cfg)
    return runner, runner.test()


def expected_metrics(root):
    """top-1, COCO box mAP and mIoU of the oracle, computed here from the files."""
    wrong = {f"shapes_val_{i:06d}" for i in range(6) if i % CORRUPT_EVERY == 0}
    coco = json.loads((root / "coco/annotations/instances_val2017.json").read_text())
    stem_of = {image["id"]: image["file_name"][:-4] for image in coco["images"]}
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in coco["annotations"]
        if stem_of[a["image_id"]] not in wrong
    ]
    bbox_map = evaluate_bbox(coco, results).stats[0]
    matrix = np.zeros((7, 7), np.int64)
    for stem in stem_of.values():
        gt = np.array(Image.open(root / "VOCdevkit/VOC2012/SegmentationClass" / f"{stem}.png"))
        gt = gt[gt != 255].astype(np.int64)
        pred = np.zeros_like(gt) if stem in wrong else gt
        matrix += np.bincount(gt * 7 + pred, minlength=49).reshape(7, 7)
    return {
        "classification/top1": 1 - len(wrong) / 6,
        "coco/bbox_mAP": bbox_map,
        "voc/mIoU": scores_from_confusion(matrix)["mIoU"],
    }


def test_joined_and_per_task_entries_give_the_oracle_metrics(tiny_shapes, tmp_path):
    joined_runner, joined = run_test(runner_config(tiny_shapes, tmp_path / "joined"))
    per_task_runner, per_task = run_test(runner_config(tiny_shapes, tmp_path / "split", PER_TASK))

    expected = expected_metrics(tiny_shapes)
    assert 0.1 < expected["coco/bbox_mAP"] < 0.9 and 0.1 < expected["voc/mIoU"] < 0.9
    for name, value in expected.items():
        assert joined[name] == pytest.approx(value, abs=1e-9), name
        assert per_task[name] == pytest.approx(value, abs=1e-9), name
    assert set(joined) == set(per_task)
    assert {name.split("/")[0] for name in joined} == {"classification", "coco", "voc"}

    # Each entry ran only the heads its metrics score.
    assert joined_runner.model.active_history == [("classification", "detection", "segmentation")]
    assert per_task_runner.model.active_history == [
        ("classification",),
        ("detection",),
        *[("segmentation",)] * 6,  # batch_size 1
    ]


def test_each_metric_gets_its_own_tasks_metainfo(tiny_shapes, tmp_path):
    runner = build(runner_config(tiny_shapes, tmp_path))
    loop = runner.test_loop
    assert isinstance(loop, MultiTaskTestLoop)
    (entry,) = loop.entries
    assert entry.name == "shapes" and entry.heads == ("classification", "detection", "segmentation")
    top_k, coco, miou = entry.evaluator.metrics
    folders = tuple(sorted(p.name for p in (tiny_shapes / "imagenet/val").iterdir()))
    assert top_k.dataset_meta["classes"] == folders
    assert coco.dataset_meta["category_ids"] == (1, 2, 4, 5, 7, 9)
    assert coco.dataset_meta["classes"][:2] == ("circle", "square")
    assert miou.dataset_meta["classes"] == SEG_CLASSES
    assert "tasks" not in miou.dataset_meta


def test_a_perfect_oracle_scores_one_everywhere(tiny_shapes, tmp_path):
    _, metrics = run_test(runner_config(tiny_shapes, tmp_path, corrupt_every=0))
    for name in (
        "classification/top1",
        "coco/bbox_mAP",
        "coco/bbox_mAP_50",
        "voc/mIoU",
        "voc/aAcc",
    ):
        assert metrics[name] == pytest.approx(1.0, abs=1e-9), name


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda cfg: cfg.test_evaluator.pop("voc"),
            r"the dataloader entries \['imagenet', 'coco', 'voc'\] and the evaluator entries "
            r"\['imagenet', 'coco'\] differ",
        ),
        (
            lambda cfg: cfg.test_evaluator.__setitem__("voc", dict(type="MeanIoU")),
            r"entry 'voc': name the head each metric scores, e.g. dict\(detection=",
        ),
        (
            lambda cfg: cfg.__setitem__("test_dataloader", cfg.test_dataloader.coco),
            "a multi-task loop takes dict\\(entry_name=dataloader config",
        ),
        (
            lambda cfg: cfg.test_evaluator.coco.__setitem__(
                "segmentation", dict(type="MeanIoU", prefix="voc")
            ),
            "entries 'coco' and 'voc' both have metrics with the prefix 'voc'",
        ),
    ],
    ids=["entries_differ", "no_head_level", "single_loader", "prefix_clash"],
)
def test_config_mistakes_are_named(tiny_shapes, tmp_path, edit, message):
    cfg = runner_config(tiny_shapes, tmp_path, PER_TASK)
    edit(cfg)
    with pytest.raises(ConfigError, match=message):
        build(cfg).test()


def test_a_joined_dataset_without_the_scored_head_is_named(tiny_shapes, tmp_path):
    cfg = runner_config(tiny_shapes, tmp_path)
    del cfg.test_dataloader.shapes.dataset.datasets["segmentation"]
    cfg.test_dataloader.shapes.dataset.pipeline = [dict(type="LoadImage"), dict(type="PackInputs")]
    with pytest.raises(
        ConfigError,
        match=r"entry 'shapes': the dataset has annotations for the tasks "
        r"\['classification', 'detection'\], not for 'segmentation'",
    ):
        build(cfg).test()


def test_validation_during_training_logs_every_heads_metrics(tiny_shapes, tmp_path):
    """A real training run: the joined train set, the toy model learning, validation
    after each of 2 epochs through MultiTaskValLoop."""
    cfg = runner_config(tiny_shapes, tmp_path)
    shipped = config_on_data(JOINED, tiny_shapes)
    cfg.model.oracle = False
    cfg.update(
        train_dataloader=dict(
            shipped.train_dataloader, batch_size=4, num_workers=0, persistent_workers=False
        ),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=2, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1)),
    )
    runner = build(cfg)
    runner.train()
    scalars = runner.message_hub.log_scalars
    for name in ("val/classification/top1", "val/coco/bbox_mAP", "val/voc/mIoU"):
        assert len(scalars[name].data[0]) == 2, name  # one value per validation
    for loss in ("loss_classification", "loss_detection", "loss_segmentation"):
        assert f"train/{loss}" in scalars
    # tools/plot_curves.py reads the run's log: a loss per head, each metric twice
    curves = load_tool("plot_curves").main([str(tmp_path)])
    assert set(curves.losses) == {
        "loss",
        "loss_classification",
        "loss_detection",
        "loss_segmentation",
    }
    iterations = curves.losses["loss"][0]
    assert iterations == list(range(1, 7))  # 12 images, batch 4, 2 epochs, logged every iteration
    for name in ("classification/top1", "coco/bbox_mAP", "voc/mIoU"):
        assert curves.metrics[name][0] == [3, 6], name  # after each epoch
    assert (tmp_path / "curves.png").is_file()


def test_pictures_of_each_entry_go_to_their_own_folder(tiny_shapes, tmp_path):
    cfg = runner_config(tiny_shapes, tmp_path / "work", PER_TASK)
    cfg.custom_hooks = [
        dict(type="ShowPredictionsHook", out_dir=str(tmp_path / "show"), max_images=2)
    ]
    run_test(cfg)
    stems = sorted(
        p.stem for p in (tiny_shapes / "VOCdevkit/VOC2012/JPEGImages").glob("shapes_val_*")
    )
    voc_first = stems[:2]  # VOCSegmentation lists val.txt in order
    assert sorted(p.name for p in (tmp_path / "show/voc").iterdir()) == sorted(
        [f"{s}.png" for s in voc_first] + [f"{s}_overlay.png" for s in voc_first]
    )
    for entry in ("coco", "imagenet"):  # boxes alone / the top-5 caption alone: one picture each
        pictures = sorted((tmp_path / "show" / entry).iterdir())
        assert len(pictures) == 2 and all(p.suffix == ".png" for p in pictures)
    picture = next((tmp_path / "show/imagenet").iterdir())
    (original,) = (tiny_shapes / "imagenet/val").rglob(f"{picture.stem}.jpg")
    height, width = load_image(original).shape[:2]
    assert load_image(picture).shape == (height + 6 * 16 + 4, max(width, 160), 3)  # top-5 + true
