"""ZoomOut / MinIoURandomCrop with hand-checked boxes, and the SSD pipelines the COCO config builds."""

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from mtvision.data import Albumentations, CocoDetection, MinIoURandomCrop
from mtvision.engine import load_config
from mtvision.synthetic.shapes import generate_shapes_dataset

COCO_CONFIG = "configs/_base_/datasets/coco_detection.py"


def config_pipelines():
    """``train_pipeline`` and ``test_pipeline`` of the COCO detection config, as it is loaded."""
    cfg = load_config(COCO_CONFIG)
    assert cfg.train_dataloader.dataset.pipeline == cfg.train_pipeline
    assert cfg.val_dataloader.dataset.pipeline == cfg.test_pipeline
    return cfg.train_pipeline, cfg.test_pipeline


def coordinate_image(height, width):
    """R = x, G = y, B = 7: every pixel tells where it came from (sides up to 256)."""
    ys, xs = np.mgrid[:height, :width]
    return np.stack([xs, ys, np.full_like(xs, 7)], axis=-1).astype(np.uint8)


def find_placement(canvas, image):
    """(left, top) of ``image`` pasted inside ``canvas``, located by its first pixel."""
    ys, xs = np.nonzero((canvas == image[0, 0]).all(axis=-1))
    left, top = int(xs.min()), int(ys.min())
    h, w = image.shape[:2]
    np.testing.assert_array_equal(canvas[top : top + h, left : left + w], image)
    return left, top


# ---------------------------------------------------------------- ZoomOut


def test_zoom_out_places_image_and_moves_boxes_by_the_offset():
    image = coordinate_image(50, 100)
    boxes = np.array([[10, 20, 30, 40], [0, 0, 100, 50]], np.float32)
    mask = np.zeros((50, 100), np.uint8)
    mask[20:40, 10:30] = 3
    augment = Albumentations([dict(type="ZoomOut", ratio_range=(3.0, 3.0), p=1.0)])
    placements = set()
    for seed in range(4):
        torch.manual_seed(seed)
        out = augment({"image": image, "boxes": boxes, "labels": np.array([5, 2]), "mask": mask})
        canvas = out["image"]
        assert canvas.shape == (150, 300, 3)
        left, top = find_placement(canvas, image)
        assert 0 <= left <= 200 and 0 <= top <= 100
        placements.add((left, top))
        # the canvas is the ImageNet mean, rounded to uint8
        outside = np.ones((150, 300), bool)
        outside[top : top + 50, left : left + 100] = False
        np.testing.assert_array_equal(np.unique(canvas[outside], axis=0), [[124, 116, 104]])
        expected = boxes + np.array([left, top, left, top], np.float32)
        np.testing.assert_allclose(out["boxes"], expected, atol=1e-3)
        np.testing.assert_array_equal(out["labels"], [5, 2])
        # the mask is placed like the image, on a 0 canvas
        assert out["mask"].shape == (150, 300)
        assert out["mask"].sum() == 3 * 20 * 20
        assert (out["mask"][top + 20 : top + 40, left + 10 : left + 30] == 3).all()
        assert out["meta"]["img_shape"] == (150, 300)
    assert len(placements) == 4  # the position is drawn, not fixed


def test_zoom_out_ratio_one_is_identity_and_p_zero_never_applies():
    image = coordinate_image(30, 40)
    boxes = np.array([[1, 2, 3, 4]], np.float32)
    for cfg in (dict(ratio_range=(1.0, 1.0), p=1.0), dict(p=0.0)):
        out = Albumentations([dict(type="ZoomOut", **cfg)])(
            {"image": image, "boxes": boxes, "labels": np.array([0])}
        )
        np.testing.assert_array_equal(out["image"], image)
        np.testing.assert_allclose(out["boxes"], boxes, atol=1e-4)


def test_zoom_out_canvas_sizes_span_the_ratio_range():
    augment = Albumentations([dict(type="ZoomOut", ratio_range=(1.0, 4.0), p=1.0)])
    torch.manual_seed(0)
    widths = [augment({"image": coordinate_image(10, 20)})["image"].shape[1] for _ in range(60)]
    assert min(widths) >= 20 and max(widths) <= 80
    assert min(widths) < 35 and max(widths) > 65


def test_zoom_out_rejects_ratios_below_one():
    with pytest.raises(ValueError, match=r"(?s)ssd_transforms.ZoomOut.*1 <= min <= max"):
        Albumentations([dict(type="ZoomOut", ratio_range=(0.5, 2.0))])


# ---------------------------------------------------------------- MinIoURandomCrop


def test_min_iou_crop_keeps_boxes_with_centre_inside_and_clips_them():
    image = coordinate_image(100, 120)
    boxes = np.array([[10, 20, 60, 80], [70, 10, 110, 50], [0, 85, 20, 100]], np.float32)
    labels = np.array([1, 2, 3])
    augment = Albumentations([dict(type="MinIoURandomCrop")])
    crops = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out = augment({"image": image, "boxes": boxes, "labels": labels})
        crop = out["image"]
        # the crop's first pixel holds its origin; the image is an exact slice
        x0, y0 = int(crop[0, 0, 0]), int(crop[0, 0, 1])
        h, w = crop.shape[:2]
        np.testing.assert_array_equal(crop, image[y0 : y0 + h, x0 : x0 + w])
        crops += (h, w) != (100, 120)

        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (
            (centres[:, 0] > x0)
            & (centres[:, 0] < x0 + w)
            & (centres[:, 1] > y0)
            & (centres[:, 1] < y0 + h)
        )
        expected = boxes[inside] - np.array([x0, y0, x0, y0], np.float32)
        expected = np.clip(expected, 0, [w, h, w, h])
        np.testing.assert_allclose(out["boxes"], expected, atol=1e-3)
        np.testing.assert_array_equal(out["labels"], labels[inside])
        assert inside.any()
    assert crops >= 10


@pytest.mark.parametrize(
    "boxes",
    [
        # one large box: every min_iou is reachable, so every mode shows up
        [[5, 5, 295, 195]],
        # a large and a small box: IoU >= 0.7 with both is impossible
        [[20, 30, 250, 190], [100, 50, 200, 150]],
    ],
    ids=["one_box", "two_boxes"],
)
def test_min_iou_crop_draws_satisfy_the_ssd_constraints(boxes):
    height, width = 200, 300
    boxes = np.array(boxes, np.float64)
    normalised = boxes / [width, height, width, height]
    crop = MinIoURandomCrop(min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3)
    crop.set_random_seed(0)
    modes = set()
    for _ in range(300):
        params = crop.get_params_dependent_on_data(
            {"shape": (height, width)}, {"bboxes": normalised}
        )
        x0, y0, x1, y1 = params["crop_coords"]
        modes.add(params["min_iou"])
        if params["min_iou"] is None:
            assert (x0, y0, x1, y1) == (0, 0, width, height)
            continue
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert x1 - x0 >= int(0.3 * width) and y1 - y0 >= int(0.3 * height)
        assert 0.5 - 0.02 <= (y1 - y0) / (x1 - x0) <= 2.0 + 0.02  # int() rounding of the sides
        ious = box_iou(torch.tensor([[x0, y0, x1, y1]], dtype=torch.float64), torch.tensor(boxes))
        assert ious.min() >= params["min_iou"]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        assert ((centres > [x0, y0]) & (centres < [x1, y1])).all(axis=1).any()
    if len(boxes) == 1:
        assert modes == {None, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9}
    else:
        assert {None, 0.0, 0.1, 0.3} <= modes and not modes & {0.7, 0.9}


def test_min_iou_crop_of_an_image_without_boxes():
    augment = Albumentations([dict(type="MinIoURandomCrop")])
    torch.manual_seed(0)
    shapes = set()
    for _ in range(20):
        out = augment({"image": coordinate_image(60, 80), "boxes": np.zeros((0, 4)), "labels": []})
        assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)
        shapes.add(out["image"].shape)
    assert len(shapes) > 1


def test_zoom_out_flip_resize_chain_by_hand():
    image = coordinate_image(50, 100)
    augment = Albumentations(
        [
            dict(type="ZoomOut", ratio_range=(2.0, 2.0), p=1.0),
            dict(type="HorizontalFlip", p=1.0),
            dict(type="Resize", height=50, width=100),
        ]
    )
    torch.manual_seed(3)
    out = augment(
        {"image": image, "boxes": np.array([[10, 20, 30, 40]], np.float32), "labels": [4]}
    )
    # undo the resize and the flip on the image to find where the zoom-out put it
    replay = Albumentations([dict(type="ZoomOut", ratio_range=(2.0, 2.0), p=1.0)])
    torch.manual_seed(3)
    left, top = find_placement(replay({"image": image})["image"], image)
    # canvas 100 x 200; flip: x -> 200 - x; resize to half
    expected = [(200 - (30 + left)) / 2, (20 + top) / 2, (200 - (10 + left)) / 2, (40 + top) / 2]
    np.testing.assert_allclose(out["boxes"], [expected], atol=1e-3)
    assert out["image"].shape == (50, 100, 3)


def test_ssd_transforms_follow_the_torch_seed():
    cfg = [dict(type="ZoomOut", p=1.0), dict(type="MinIoURandomCrop")]
    sample = {
        "image": coordinate_image(60, 80),
        "boxes": np.array([[10, 10, 50, 40]]),
        "labels": [0],
    }

    def run(seed):
        torch.manual_seed(seed)
        augment = Albumentations(cfg)
        return [augment(dict(sample))["boxes"] for _ in range(4)]

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        a.shape != b.shape or not np.allclose(a, b) for a, b in zip(first, other, strict=True)
    )


# ---------------------------------------------------------------- the SSD pipelines of the config


def test_photometric_steps_use_mmdet_ranges():
    train_pipeline, _ = config_pipelines()
    transforms = train_pipeline[1]["transforms"]
    brightness = {**transforms[0], "p": 1.0}
    hue = {**transforms[1]["transforms"][0]["transforms"][2], "p": 1.0}

    grey = np.full((4, 4, 3), 128, np.uint8)
    augment = Albumentations([brightness])
    torch.manual_seed(0)
    deltas = []
    for _ in range(200):
        out = augment({"image": grey})["image"].astype(int) - 128
        assert (out == out[0, 0, 0]).all()  # one additive shift for all pixels
        deltas.append(out[0, 0, 0])
    assert max(np.abs(deltas)) <= 32 and max(deltas) >= 28 and min(deltas) <= -28

    green = np.zeros((4, 4, 3), np.uint8)
    green[..., 1] = 255
    augment = Albumentations([hue])
    shifts = []
    for _ in range(200):
        out = augment({"image": green})["image"]
        shifts.append(int(cv2.cvtColor(out, cv2.COLOR_RGB2HSV)[0, 0, 0]) - 60)  # 2 degree units
    assert max(np.abs(shifts)) <= 9 + 1  # 18 degrees, +1 for uint8 rounding
    assert max(shifts) >= 7 and min(shifts) <= -7


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(root, seed=0, num_train=12, num_val=2)
    return root / "coco"


def test_ssd_train_pipeline_keeps_boxes_inside_and_aligned(shapes_coco):
    train_pipeline, _ = config_pipelines()
    dataset = CocoDetection(shapes_coco, data_prefix=dict(img="train2017"), pipeline=train_pipeline)
    torch.manual_seed(0)
    num_boxes = 0
    for _ in range(3):
        for index in range(len(dataset)):
            sample = dataset[index]
            assert sample["inputs"].shape == (3, 320, 320)
            boxes, labels = sample["data_samples"]["boxes"], sample["data_samples"]["labels"]
            assert len(boxes) == len(labels)
            assert (boxes >= 0).all() and (boxes <= 320).all()
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            num_boxes += len(boxes)
    assert num_boxes > 3 * len(dataset)  # most boxes survive the crops

    # Alignment: each object's area is painted with label + 1 in a mask, which the
    # geometric steps move like the image (photometric steps leave masks alone).
    augment = Albumentations(train_pipeline[1]["transforms"])
    boxes = np.array([[5, 5, 45, 35], [60, 10, 110, 50], [20, 60, 70, 95]], np.float32)
    labels = np.array([0, 1, 2])
    mask = np.zeros((100, 120), np.uint8)
    for (x1, y1, x2, y2), label in zip(boxes.astype(int), labels, strict=True):
        mask[y1:y2, x1:x2] = label + 1
    image = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    for _ in range(40):
        out = augment({"image": image, "boxes": boxes, "labels": labels, "mask": mask})
        centres = ((out["boxes"][:, :2] + out["boxes"][:, 2:]) / 2).astype(int)
        np.testing.assert_array_equal(out["mask"][centres[:, 1], centres[:, 0]], out["labels"] + 1)


def test_ssd_pipelines_pass_images_without_boxes(shapes_coco):
    for pipeline, test_mode in zip(config_pipelines(), (False, True), strict=True):
        dataset = CocoDetection(
            shapes_coco,
            ann_file="annotations/instances_val2017.json",
            data_prefix=dict(img="val2017"),
            pipeline=pipeline,
            test_mode=test_mode,
        )
        img_path = dataset.get_data_info(0)["img_path"]
        empty = {"img_path": img_path, "boxes": np.zeros((0, 4), np.float32), "labels": []}
        for _ in range(10):
            out = dataset.pipeline(dict(empty))
            assert out["inputs"].shape == (3, 320, 320)
            assert out["data_samples"]["boxes"].shape == (0, 4)
            assert out["data_samples"]["labels"].shape == (0,)
        assert "boxes" not in dataset.pipeline({"img_path": img_path})["data_samples"]


def test_ssd_test_pipeline_resizes_only(shapes_coco):
    _, test_pipeline = config_pipelines()
    dataset = CocoDetection(
        shapes_coco,
        ann_file="annotations/instances_val2017.json",
        data_prefix=dict(img="val2017"),
        pipeline=test_pipeline,
        test_mode=True,
    )
    info = dataset.get_data_info(0)
    sample = dataset[0]
    meta = sample["data_samples"]["meta"]
    height, width = meta["ori_shape"]
    assert meta["img_shape"] == (320, 320)
    scale = np.array([320 / width, 320 / height] * 2, np.float32)
    np.testing.assert_allclose(sample["data_samples"]["boxes"], info["boxes"] * scale, rtol=1e-5)
