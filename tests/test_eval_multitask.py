"""tools/eval.py on a multi-task config: one table of every head's metrics, --out, --show-dir."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_toy import load_tool
from multitask_toy import ToyMultiTaskModel
from PIL import Image

from mtvision.apis import evaluation
from mtvision.data.image_io import load_image
from mtvision.data.voc_segmentation import voc_palette
from mtvision.engine import load_config
from mtvision.visualization.draw import draw_detections, draw_segmentation, draw_topk

eval_tool = load_tool("eval")
REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = dict(classification=6, detection=6, segmentation=7)


def write_config(path: Path, root: Path) -> str:
    """A user's recipe: the shipped joined-shapes data config, its data moved, the oracle model."""
    path.write_text(
        f"""_base_ = [{str(REPO / "configs/_base_/datasets/multitask_shapes.py")!r}]
custom_imports = dict(imports=["multitask_toy"], allow_failed_imports=False)
model = dict(type="ToyMultiTaskModel", num_classes={NUM_CLASSES!r}, oracle=True, corrupt_every=3)
test_dataloader = dict(
    shapes=dict(
        num_workers=0,
        persistent_workers=False,
        dataset=dict(
            datasets=dict(
                detection=dict(data_root="{root}/coco/"),
                classification=dict(data_root="{root}/imagenet"),
                segmentation=dict(data_root="{root}/VOCdevkit/VOC2012"),
            )
        ),
    )
)
test_evaluator = dict(
    shapes=dict(detection=dict(ann_file="{root}/coco/annotations/instances_val2017.json"))
)
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=1)
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.01))
log_level = "WARNING"
"""
    )
    return str(path)


@pytest.fixture(scope="module")
def evaluated(tiny_shapes, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("eval_multitask")
    config = write_config(tmp_path / "multitask.py", tiny_shapes)
    checkpoint = tmp_path / "toy.pth"
    torch.save({"state_dict": ToyMultiTaskModel(NUM_CLASSES).state_dict()}, checkpoint)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = eval_tool.main(
            [config, str(checkpoint), "--work-dir", str(tmp_path / "work")]
            + ["--out", str(tmp_path / "results.json"), "--show-dir", str(tmp_path / "show")]
        )
    return tmp_path, metrics, printed.getvalue()


def test_one_table_of_every_heads_metrics(evaluated, tiny_shapes):
    tmp_path, metrics, printed = evaluated
    assert metrics["classification/top1"] == pytest.approx(4 / 6)
    assert 0 < metrics["coco/bbox_mAP"] < 1 and 0 < metrics["voc/mIoU"] < 1
    # With a CocoMetric among the metrics, --out FILE.json gets the COCO results, as for
    # a detector: the oracle's boxes (one per annotation of the 4 images it gets right).
    results = json.loads((tmp_path / "results.json").read_text())
    coco = json.loads((tiny_shapes / "coco/annotations/instances_val2017.json").read_text())
    right = [i["id"] for i in coco["images"] if int(i["file_name"][-8:-4]) % 3]
    assert sorted(r["image_id"] for r in results) == sorted(
        a["image_id"] for a in coco["annotations"] if a["image_id"] in right
    )
    assert {r["category_id"] for r in results} <= {1, 2, 4, 5, 7, 9}

    table = evaluation.format_metrics_table(metrics)
    assert table in printed
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "value"]
    assert [line.split()[0] for line in lines[1:]] == sorted(metrics)
    assert len(metrics) == 2 + 12 + 3  # top-1/5, the 12 COCO statistics, mIoU/mAcc/aAcc
    assert ["classification/top1", f"{4 / 6:.4f}"] in [line.split() for line in lines]
    assert evaluation.format_metrics_table({}) == "(no metrics)"
    assert evaluation.format_metrics_table({"a/n": 7, "a/x": np.float64(0.5)}).splitlines()[1:] == [
        "a/n     7",
        "a/x     0.5000",
    ]


def test_pictures_show_mask_boxes_and_top5_on_one_image(evaluated, tiny_shapes):
    tmp_path, _, _ = evaluated
    voc = tiny_shapes / "VOCdevkit/VOC2012"
    stems = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    written = sorted(p.name for p in (tmp_path / "show").iterdir())
    assert written == sorted([f"{s}.png" for s in stems] + [f"{s}_overlay.png" for s in stems])

    coco = json.loads((tiny_shapes / "coco/annotations/instances_val2017.json").read_text())
    category_ids = [1, 2, 4, 5, 7, 9]
    names = ["circle", "square", "triangle", "star", "cross", "hexagon"]
    folders = sorted(p.name for p in (tiny_shapes / "imagenet/val").iterdir())
    stem = stems[1]  # predicted right by the oracle
    image = load_image(tiny_shapes / "coco/val2017" / f"{stem}.jpg")
    (image_id,) = [i["id"] for i in coco["images"] if i["file_name"] == f"{stem}.jpg"]
    anns = [a for a in coco["annotations"] if a["image_id"] == image_id]
    gt_mask = np.array(Image.open(voc / "SegmentationClass" / f"{stem}.png"))
    pred_mask = np.where(gt_mask == 255, 0, gt_mask)
    (folder,) = [f for f in folders if (tiny_shapes / "imagenet/val" / f / f"{stem}.jpg").exists()]
    label = folders.index(folder)

    png = Image.open(tmp_path / "show" / f"{stem}.png")
    assert png.mode == "P" and np.array_equal(np.array(png), pred_mask)
    palette = np.asarray(voc_palette(7), np.uint8)
    expected = draw_segmentation(image, pred_mask, palette, 0.5)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    labels = [category_ids.index(a["category_id"]) for a in anns]
    expected = draw_detections(expected, boxes, labels, np.ones(len(anns)), names, 0.3)
    expected = draw_topk(expected, np.eye(6)[label], folders, 5, label)
    picture = load_image(tmp_path / "show" / f"{stem}_overlay.png")
    assert picture.shape == expected.shape
    # boxes were scaled to 160 px and back: a box edge may move by one pixel
    assert np.mean(np.any(picture != expected, axis=2)) < 0.01
    assert picture.shape[0] > image.shape[0]  # the top-5 caption is below the image


def test_out_routes_for_several_entries(tmp_path):
    cfg = load_config(str(REPO / "configs/_base_/datasets/multitask_coco_voc_imagenet.py"))
    assert evaluation.route_out(cfg, str(tmp_path / "p.pkl")) is False
    for entry, heads in cfg.test_evaluator.items():
        dumps = [m for ms in heads.values() for m in ms if m["type"] == "DumpResults"]
        assert [d["out_file_path"] for d in dumps] == [str(tmp_path / f"p.{entry}.pkl")]

    cfg = load_config(str(REPO / "configs/_base_/datasets/multitask_coco_voc_imagenet.py"))
    assert evaluation.route_out(cfg, str(tmp_path / "results.json")) is True
    assert cfg.test_evaluator.coco.detection.results_file == str(tmp_path / "results.json")
