"""JoinedDataset: the synthetic set's three layouts joined by image, joint augmentation, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from multitask_toy import config_on_data
from PIL import Image

from mtvision.data import Albumentations, JoinedDataset
from mtvision.data.image_io import load_image
from mtvision.errors import AnnotationError, ConfigError
from mtvision.registry import DATASETS

CONFIG = "configs/_base_/datasets/multitask_shapes.py"
NO_AUGMENTATION = [dict(type="LoadImage"), dict(type="LoadMask"), dict(type="PackInputs")]


def joined(root, split="train", pipeline=None, **overrides):
    cfg = config_on_data(CONFIG, root)
    dataset = (
        cfg.train_dataloader.dataset if split == "train" else cfg.val_dataloader.shapes.dataset
    )
    dataset = dict(dataset, **overrides)
    if pipeline is not None:
        dataset["pipeline"] = pipeline
    return DATASETS.build(dataset)


def test_samples_carry_label_boxes_and_mask_of_the_same_image(tiny_shapes):
    dataset = joined(tiny_shapes, pipeline=NO_AUGMENTATION)
    coco = json.loads((tiny_shapes / "coco/annotations/instances_train2017.json").read_text())
    image_of = {image["file_name"]: image for image in coco["images"]}
    category_ids = [
        category["id"] for category in sorted(coco["categories"], key=lambda c: c["id"])
    ]
    folders = sorted(p.name for p in (tiny_shapes / "imagenet/train").iterdir())
    assert len(dataset) == 12

    tasks = dataset.metainfo["tasks"]
    assert list(tasks) == ["detection", "classification", "segmentation"]
    assert tasks["detection"]["category_ids"] == (1, 2, 4, 5, 7, 9)
    assert tasks["classification"]["classes"] == tuple(folders)
    assert tasks["segmentation"]["classes"][0] == "background"
    assert "classes" not in dataset.metainfo  # no task's class list at the top

    for index in range(len(dataset)):
        sample = dataset[index]
        inputs, data = sample["inputs"], sample["data_samples"]
        stem = Path(data["meta"]["img_path"]).stem
        image = image_of[f"{stem}.jpg"]
        # the COCO image id, read by CocoMetric; the pixels of all three layouts
        assert data["meta"]["img_id"] == image["id"]
        assert np.array_equal(
            inputs.permute(1, 2, 0).numpy(),
            load_image(tiny_shapes / "coco/train2017" / f"{stem}.jpg"),
        )
        # label: the ImageNet folder holding the file
        (folder,) = [
            f for f in folders if (tiny_shapes / "imagenet/train" / f / f"{stem}.jpg").exists()
        ]
        assert data["label"] == folders.index(folder)
        # boxes: the json's, xywh -> xyxy; labels in category-id order
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        np.testing.assert_allclose(data["boxes"].numpy(), expected.reshape(-1, 4))
        assert data["labels"].tolist() == [category_ids.index(a["category_id"]) for a in anns]
        # mask: the VOC PNG's indices
        png = tiny_shapes / "VOCdevkit/VOC2012/SegmentationClass" / f"{stem}.png"
        assert np.array_equal(data["mask"].numpy(), np.array(Image.open(png)))
        # the dominant shape (the label) is the first COCO annotation and a mask class
        assert folders[data["label"]] == tasks["detection"]["classes"][int(data["labels"][0])]


def coordinate_image(height, width):
    """R = x, G = y, B = 7: each pixel tells where it came from; padding has B = 0."""
    ys, xs = np.mgrid[:height, :width]
    return np.stack([xs, ys, np.full_like(xs, 7)], axis=-1).astype(np.uint8)


BOXES = np.array(
    [[10, 12, 50, 40], [60, 5, 110, 70], [20, 55, 45, 95], [100, 80, 150, 115]], np.float32
)


def coordinate_sample():
    """A 120 x 160 image, four boxes (labels 0..3) and a mask painting box k with k + 1,
    with an ignore (255) strip."""
    mask = np.zeros((120, 160), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(BOXES.astype(int)):
        mask[y1:y2, x1:x2] = k + 1
    mask[100:104, :] = 255
    return {
        "image": coordinate_image(120, 160),
        "boxes": BOXES,
        "labels": np.arange(4),
        "mask": mask,
    }


JOINT_AUGMENTATIONS = {
    "flip_resize": [
        dict(type="HorizontalFlip", p=1.0),
        dict(type="Resize", height=60, width=80, interpolation=0),
    ],
    "crop_vflip": [dict(type="RandomCrop", height=70, width=90), dict(type="VerticalFlip", p=1.0)],
    "resized_crop": [
        dict(type="RandomResizedCrop", size=(64, 64), scale=(0.3, 1.0), interpolation=0),
        dict(type="HorizontalFlip", p=0.5),
    ],
    "scale_pad_crop": [
        dict(
            type="RandomScale",
            scale_limit=(-0.5, 0.5),
            interpolation=0,
            mask_interpolation=0,
            p=1.0,
        ),
        dict(
            type="PadIfNeeded",
            min_height=120,
            min_width=160,
            position="top_left",
            border_mode=0,
            fill=0,
            fill_mask=255,
        ),
        dict(type="RandomCrop", height=120, width=160),
    ],
}


@pytest.mark.parametrize("name", list(JOINT_AUGMENTATIONS))
def test_joint_augmentation_keeps_boxes_and_mask_on_the_pixels(name):
    augment = Albumentations(JOINT_AUGMENTATIONS[name])
    sample = coordinate_sample()
    torch.manual_seed(0)
    kept = 0
    for _ in range(15):
        out = augment(dict(sample))
        image, mask = out["image"], out["mask"]
        real = image[..., 2] == 7
        src_x, src_y = image[..., 0].astype(int), image[..., 1].astype(int)
        # every real pixel's mask value is the mask value where the pixel came from
        assert np.array_equal(mask[real], sample["mask"][src_y[real], src_x[real]])
        assert (mask[~real] == 255).all()  # padding is "ignore"
        for k in range(4):
            x1, y1, x2, y2 = BOXES[k]
            from_box = real & (src_x >= x1) & (src_x < x2) & (src_y >= y1) & (src_y < y2)
            if k not in out["labels"]:
                assert not from_box.any()  # a box is dropped only when none of it is left
                continue
            kept += 1
            ys, xs = np.nonzero(from_box)
            pixel_box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            box = out["boxes"][list(out["labels"]).index(k)]
            np.testing.assert_allclose(box, pixel_box, atol=1.01)
    assert kept >= 15


def test_shipped_train_pipeline_keeps_annotations_aligned(tiny_shapes):
    dataset = joined(tiny_shapes)
    torch.manual_seed(0)
    for _ in range(3):
        for index in range(len(dataset)):
            data = dataset[index]["data_samples"]
            assert dataset[index]["inputs"].shape == (3, 160, 160)
            mask, boxes, labels = (
                data["mask"].numpy(),
                data["boxes"].numpy(),
                data["labels"].numpy(),
            )
            assert mask.shape == (160, 160)
            # every object pixel lies in a box of its class (the mask holds 1 + class index,
            # COCO's contiguous labels follow the same SHAPE_CLASSES order)
            for value in set(np.unique(mask)) - {0, 255}:
                ys, xs = np.nonzero(mask == value)
                inside = np.zeros(len(xs), bool)
                for x1, y1, x2, y2 in boxes[labels == value - 1]:
                    inside |= (xs >= x1 - 2) & (xs < x2 + 2) & (ys >= y1 - 2) & (ys < y2 + 2)
                assert inside.all(), (index, value)


def test_shipped_val_pipeline_resizes_the_image_and_keeps_the_mask_at_its_size(tiny_shapes):
    dataset = joined(tiny_shapes, split="val")
    plain = joined(tiny_shapes, split="val", pipeline=NO_AUGMENTATION)
    assert len(dataset) == 6
    for index in range(len(dataset)):
        sample, original = dataset[index], plain[index]["data_samples"]
        meta = sample["data_samples"]["meta"]
        height, width = meta["ori_shape"]
        assert sample["inputs"].shape == (3, 160, 160) and meta["img_shape"] == (160, 160)
        assert np.array_equal(sample["data_samples"]["mask"], original["mask"])
        assert original["mask"].shape == (height, width)
        scale = np.array([160 / width, 160 / height] * 2, np.float32)
        np.testing.assert_allclose(
            sample["data_samples"]["boxes"].numpy(), original["boxes"].numpy() * scale, rtol=1e-5
        )


# ------------------------------------------------------------------ bad input


@pytest.fixture
def shapes_copy(tiny_shapes, tmp_path):
    return Path(shutil.copytree(tiny_shapes, tmp_path / "shapes"))


def test_image_missing_from_one_part_is_named(shapes_copy, logged_warnings):
    folder = next(p for p in (shapes_copy / "imagenet/train").iterdir() if any(p.iterdir()))
    removed = sorted(folder.iterdir())[0]
    removed.unlink()
    with pytest.raises(AnnotationError) as error:
        joined(shapes_copy)
    message = str(error.value)
    assert f"'{removed.stem}' is in detection" in message
    assert str(shapes_copy / "coco/train2017" / removed.name) in message
    assert (
        f"segmentation ({shapes_copy / 'VOCdevkit/VOC2012/JPEGImages' / removed.name})" in message
    )
    assert (
        "but not in classification (ImageNetFolder " + str(shapes_copy / "imagenet/train")
        in message
    )

    dataset = joined(shapes_copy, on_unmatched="skip")
    assert len(dataset) == 11
    assert removed.stem not in {Path(dataset.get_data_info(i)["img_path"]).stem for i in range(11)}
    assert any("left out 1 images are not in every part" in m for m in logged_warnings)


def test_copies_of_different_size_are_refused_naming_the_files(shapes_copy):
    stem = "shapes_train_000004"
    voc_image = shapes_copy / "VOCdevkit/VOC2012/JPEGImages" / f"{stem}.jpg"
    width, height = Image.open(voc_image).size
    Image.open(voc_image).resize((width + 3, height)).save(voc_image)
    dataset = joined(shapes_copy, pipeline=NO_AUGMENTATION[:1] + NO_AUGMENTATION[2:])
    index = next(i for i in range(len(dataset)) if stem in dataset.get_data_info(i)["img_path"])
    with pytest.raises(AnnotationError) as error:
        dataset[index]
    message = str(error.value)
    assert (
        f"detection: {shapes_copy / 'coco/train2017' / f'{stem}.jpg'} is {width}x{height}"
        in message
    )
    assert f"segmentation: {voc_image} is {width + 3}x{height}" in message
    dataset[index - 1 if index else index + 1]  # the other images are fine


def test_parts_that_cannot_be_joined(tiny_shapes, shapes_copy):
    imagenet = dict(type="ImageNetFolder", data_root=str(tiny_shapes / "imagenet"))
    # one key from two parts: fine with one value (e.g. a size both state), else an error
    assert len(JoinedDataset(datasets=dict(a=imagenet, b=imagenet))) == 12
    folders = sorted(p.name for p in (tiny_shapes / "imagenet/train").iterdir())
    reordered = dict(imagenet, classes=folders[::-1])
    with pytest.raises(AnnotationError, match="parts 'a' and 'b' both give 'label'"):
        JoinedDataset(datasets=dict(a=imagenet, b=reordered))
    with pytest.raises(ConfigError, match="part 'a' has its own pipeline"):
        JoinedDataset(datasets=dict(a=dict(imagenet, pipeline=[dict(type="LoadImage")])))
    with pytest.raises(ConfigError, match="datasets must map part names"):
        JoinedDataset(datasets=[imagenet])
    # the same stem twice in one part (two class folders)
    train = shapes_copy / "imagenet/train"
    first, second = sorted(p for p in train.iterdir())[:2]
    duplicate = sorted(first.iterdir())[0]
    shutil.copy(duplicate, second / duplicate.name)
    with pytest.raises(
        AnnotationError, match=f"part 'a' has two images with the join key '{duplicate.stem}'"
    ):
        JoinedDataset(datasets=dict(a=dict(imagenet, data_root=str(shapes_copy / "imagenet"))))
