"""Drawing detections and masks; ShowPredictionsHook directly and via tools/eval.py --show-dir."""

import numpy as np
import pytest
import torch
from engine_toy import load_tool
from mmengine.config import Config
from PIL import Image

from mtvision.data.image_io import load_image
from mtvision.data.voc_segmentation import voc_palette
from mtvision.engine.show_predictions_hook import ShowPredictionsHook
from mtvision.registry import MODELS
from mtvision.synthetic.shapes import generate_shapes_dataset
from mtvision.utils.palette import voc_colormap
from mtvision.visualization.draw import draw_detections, draw_segmentation, draw_topk

GRAY = 120


def gray_image(height=100, width=160) -> np.ndarray:
    return np.full((height, width, 3), GRAY, np.uint8)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def test_draw_detections_marks_the_box_outline_and_its_tag_only():
    image = gray_image()
    drawn = draw_detections(
        image,
        boxes=np.array([[40.0, 40, 100, 90], [115, 55, 155, 95]]),
        labels=np.array([1, 0]),
        scores=np.array([0.9, 0.2]),  # the second box is below the threshold
        classes=["circle", "square"],
        score_threshold=0.3,
    )
    assert image.max() == image.min() == GRAY  # the input is not drawn on
    diff = changed(image, drawn)
    assert diff[65, 40] and diff[65, 100] and diff[90, 70]  # left, right, bottom edges
    assert diff[40 - 5, 45]  # the "square 0.90" tag sits above the box
    assert not diff[45:86, 45:96].any()  # the inside of the box is untouched
    assert not diff[41:, 102:].any()  # the low-score box is not drawn
    # Nothing else: left of the box, below it, far above it.
    assert not diff[:, :38].any() and not diff[93:].any() and not diff[:20].any()
    # Nothing above the threshold: nothing drawn.
    same = draw_detections(image, np.array([[40.0, 40, 100, 90]]), [1], [0.1], score_threshold=0.3)
    assert np.array_equal(same, image)


def test_draw_segmentation_blends_objects_and_keeps_background_and_ignore():
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), np.int64)
    mask[10:30, 20:50] = 2
    mask[40:50, 5:15] = 255  # ignore band
    palette = voc_colormap()
    overlay = draw_segmentation(image, mask, palette, alpha=0.5)
    assert np.array_equal(
        changed(image, overlay), (mask == 2) & np.any(palette[2] != image, axis=2)
    )
    expected = np.round(0.5 * image[mask == 2] + 0.5 * palette[2].astype(np.float64))
    assert np.array_equal(overlay[mask == 2], expected.astype(np.uint8))
    assert np.array_equal(overlay[mask != 2], image[mask != 2])
    with pytest.raises(ValueError, match="no colour in a palette of 2"):
        draw_segmentation(image, mask, palette[:2])
    with pytest.raises(ValueError, match="does not match image shape"):
        draw_segmentation(image, mask[:, :10], palette)


def write_png(path, image: np.ndarray) -> str:
    Image.fromarray(image).save(path)
    return str(path)


def test_hook_draws_detections_on_the_original_image(tmp_path):
    img_path = write_png(tmp_path / "000042.png", gray_image())
    hook = ShowPredictionsHook(out_dir=str(tmp_path / "show"), classes=["circle", "square"])
    prediction = {
        "boxes": torch.tensor([[40.0, 40, 100, 90]]),
        "scores": torch.tensor([0.8]),
        "labels": torch.tensor([0]),
        "meta": {"img_path": img_path, "sample_idx": 0, "img_id": 42},
    }
    written = hook.show(prediction)
    assert written == [str(tmp_path / "show" / "000042.png")]
    picture = load_image(written[0])
    expected = draw_detections(
        gray_image(), np.array([[40.0, 40, 100, 90]]), [0], [0.8], ["circle", "square"]
    )
    assert np.array_equal(picture, expected)
    assert changed(gray_image(), picture)[65, 40]


def test_hook_writes_palette_mask_and_overlay(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    img_path = write_png(tmp_path / "2007_000123.png", image)
    mask = torch.zeros(50, 70, dtype=torch.int64)
    mask[5:25, 10:40] = 15
    hook = ShowPredictionsHook(out_dir=str(tmp_path / "show"))
    written = hook.show({"pred_mask": mask, "meta": {"img_path": img_path}})
    assert written == [
        str(tmp_path / "show" / "2007_000123.png"),
        str(tmp_path / "show" / "2007_000123_overlay.png"),
    ]
    png = Image.open(written[0])
    assert png.mode == "P"
    assert np.array_equal(np.array(png), mask.numpy().astype(np.uint8))
    palette = np.array(png.getpalette(), np.uint8).reshape(-1, 3)
    assert np.array_equal(palette[:21], voc_colormap()[:21])
    overlay = load_image(written[1])
    assert np.array_equal(overlay, draw_segmentation(image, mask.numpy(), voc_colormap(), 0.5))
    assert changed(image, overlay)[15, 20] and not changed(image, overlay)[40, 60]


def test_hook_limit_and_bad_predictions(tmp_path):
    img_path = write_png(tmp_path / "a.png", gray_image())
    hook = ShowPredictionsHook(out_dir=str(tmp_path / "show"), max_images=2)
    mask = torch.zeros(100, 160, dtype=torch.int64)
    assert hook.show({"pred_mask": mask, "meta": {"img_path": img_path, "sample_idx": 2}}) == []
    assert not (tmp_path / "show").exists()
    assert len(hook.show({"pred_mask": mask, "meta": {"img_path": img_path, "sample_idx": 1}})) == 2
    with pytest.raises(
        ValueError, match="a.png: pred_mask is \\(10, 10\\), the image is \\(100, 160\\)"
    ):
        hook.show({"pred_mask": torch.zeros(10, 10), "meta": {"img_path": img_path}})
    with pytest.raises(KeyError, match="'boxes'.*'pred_mask'.*got keys \\['meta', 'pred_label'\\]"):
        hook.show({"pred_label": 3, "meta": {"img_path": img_path}})
    with pytest.raises(KeyError, match="needs meta\\['img_path'\\]"):
        hook.show({"pred_mask": mask, "meta": {}})


def test_eval_show_dir_writes_segmentation_pictures(tmp_path):
    """tools/eval.py --show-dir with an untrained DeepLabv3 on a 3-image VOC tree."""
    generate_shapes_dataset(tmp_path / "shapes", seed=0, num_train=1, num_val=3)
    voc = tmp_path / "shapes" / "VOCdevkit" / "VOC2012"
    classes = ("background", "circle", "square", "triangle", "star", "cross", "hexagon")
    model = dict(
        type="MultiTaskModel",
        backbone=dict(type="MobileNetV2", width_mult=0.35, output_stride=16),
        heads=dict(segmentation=dict(type="DeepLabV3Head", num_classes=7, channels=16)),
    )
    pipeline = [dict(type="LoadImage"), dict(type="LoadMask"), dict(type="PackInputs")]
    config = dict(
        default_scope="mtvision",
        model=model,
        test_dataloader=dict(
            batch_size=2,
            num_workers=0,
            sampler=dict(type="DefaultSampler", shuffle=False),
            collate_fn=dict(type="mtvision.collate_samples"),
            dataset=dict(
                type="VOCSegmentation",
                data_root=str(voc),
                split="val",
                classes=classes,
                pipeline=pipeline,
                test_mode=True,
            ),
        ),
        test_cfg=dict(type="TestLoop"),
        test_evaluator=dict(type="MeanIoU"),
        log_level="WARNING",
    )
    Config(config).dump(str(tmp_path / "cfg.py"))
    torch.manual_seed(0)
    torch.save({"state_dict": MODELS.build(model).state_dict()}, tmp_path / "untrained.pth")
    load_tool("eval").main(
        [str(tmp_path / "cfg.py"), str(tmp_path / "untrained.pth")]
        + ["--work-dir", str(tmp_path / "wd"), "--show-dir", str(tmp_path / "show")]
    )

    stems = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    written = sorted(p.name for p in (tmp_path / "show").iterdir())
    assert written == sorted([f"{s}.png" for s in stems] + [f"{s}_overlay.png" for s in stems])
    palette = np.asarray(voc_palette(len(classes)), np.uint8)
    for stem in stems:
        image = load_image(voc / "JPEGImages" / f"{stem}.jpg")
        png = Image.open(tmp_path / "show" / f"{stem}.png")
        mask = np.array(png)
        assert png.mode == "P" and mask.shape == image.shape[:2] and mask.max() < len(classes)
        colours = np.array(png.getpalette(), np.uint8).reshape(-1, 3)[: len(classes)]
        assert np.array_equal(colours, palette)  # the dataset's palette
        overlay = load_image(tmp_path / "show" / f"{stem}_overlay.png")
        assert np.array_equal(overlay, draw_segmentation(image, mask, palette, alpha=0.5))


def test_draw_topk_lists_the_best_classes_below_the_image():
    image = gray_image(40, 60)
    scores = np.array([0.05, 0.6, 0.1, 0.2, 0.03, 0.02])
    names = ["circle", "square", "triangle", "star", "cross", "hexagon"]
    drawn = draw_topk(image, scores, names, k=3, gt_label=3)
    # padded to 160 px so the names fit; 3 class lines + the true class, 16 px each
    assert drawn.shape == (40 + 4 * 16 + 4, 160, 3)
    assert np.array_equal(drawn[:40, :60], image) and not drawn[:40, 60:].any()
    caption = drawn[40:]
    line = lambda row: caption[16 * row : 16 * (row + 1)]  # noqa: E731
    red, green = np.array([230, 40, 40]), np.array([40, 200, 40])
    assert (line(0) == red).all(axis=2).any()  # "1. square 0.60" is wrong: red
    assert (line(1) == green).all(axis=2).any()  # "2. star 0.20" is the true class
    assert not (line(2) == green).all(axis=2).any() and line(3).any()
    assert not np.array_equal(drawn, draw_topk(image, scores, None, k=3, gt_label=3))


def test_hook_draws_mask_boxes_and_top5_of_one_prediction_on_one_picture(tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (80, 120, 3), dtype=np.uint8)
    img_path = write_png(tmp_path / "shapes_val_000007.png", image)
    mask = torch.zeros(80, 120, dtype=torch.int64)
    mask[10:50, 20:70] = 3
    scores = torch.tensor([0.1, 0.02, 0.5, 0.3, 0.05, 0.03])
    # a joined dataset's metainfo: each head its own label space
    metainfo = {
        "tasks": {
            "classification": {"classes": ("c0", "c1", "c2", "c3", "c4", "c5")},
            "detection": {"classes": ("circle", "square", "triangle")},
            "segmentation": {
                "classes": tuple("abcd"),
                "palette": [(0, 0, 0), (9, 9, 9), (5, 5, 5), (250, 10, 10)],
            },
        }
    }
    prediction = {
        "pred_mask": mask,
        "boxes": torch.tensor([[20.0, 10, 70, 50]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([2]),
        "pred_score": scores,
        "gt_label": 2,
        "meta": {"img_path": img_path, "sample_idx": 0},
    }
    hook = ShowPredictionsHook(out_dir=str(tmp_path / "show"))
    written = hook.show(prediction, metainfo)
    assert written == [
        str(tmp_path / "show" / "shapes_val_000007.png"),
        str(tmp_path / "show" / "shapes_val_000007_overlay.png"),
    ]
    palette = np.array(metainfo["tasks"]["segmentation"]["palette"], np.uint8)
    png = Image.open(written[0])
    assert np.array_equal(np.array(png), mask.numpy())
    assert np.array_equal(np.array(png.getpalette(), np.uint8).reshape(-1, 3)[:4], palette)
    expected = draw_segmentation(image, mask.numpy(), palette, 0.5)
    expected = draw_detections(
        expected, np.array([[20.0, 10, 70, 50]]), [2], [0.9], ["circle", "square", "triangle"]
    )
    expected = draw_topk(
        expected, scores.numpy(), metainfo["tasks"]["classification"]["classes"], 5, 2
    )
    assert np.array_equal(load_image(written[1]), expected)

    # classification alone: the image and its top-5 caption
    alone = hook.show({"pred_score": scores, "meta": {"img_path": img_path}}, metainfo)
    assert alone == [str(tmp_path / "show" / "shapes_val_000007.png")]
    assert np.array_equal(
        load_image(alone[0]),
        draw_topk(image, scores.numpy(), metainfo["tasks"]["classification"]["classes"]),
    )
