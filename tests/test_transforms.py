"""LoadImage / Albumentations / PackInputs on the sample dict, and collate_samples."""

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtvision.data import (
    Albumentations,
    LoadImage,
    MinIoURandomCrop,
    PackInputs,
    ZoomOut,
    collate_samples,
)
from mtvision.errors import AnnotationError
from mtvision.registry import FUNCTIONS, TRANSFORMS


def rgb_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_load_image_starts_meta_and_keeps_other_keys(tmp_path):
    rgb = rgb_image(30, 40)
    path = str(tmp_path / "a.png")
    assert cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = LoadImage()({"img_path": path, "label": 3, "sample_idx": 7})
    np.testing.assert_array_equal(out["image"], rgb)
    assert out["label"] == 3 and out["sample_idx"] == 7
    assert out["meta"] == {
        "img_path": path,
        "ori_shape": (30, 40),
        "img_shape": (30, 40),
        "sample_idx": 7,
    }


@pytest.mark.parametrize(
    "transforms",
    [
        [dict(type="RandomResizedCrop", size=(224, 224)), dict(type="HorizontalFlip", p=0.5)],
        [
            dict(type="SmallestMaxSize", max_size=256),
            dict(type="CenterCrop", height=224, width=224),
        ],
    ],
    ids=["train", "eval"],
)
def test_classification_pipelines_give_224_uint8(transforms):
    augment = TRANSFORMS.build(dict(type="Albumentations", transforms=transforms))
    pack = TRANSFORMS.build(dict(type="PackInputs"))
    sample = {"image": rgb_image(300, 400), "label": 2, "meta": {"ori_shape": (300, 400)}}
    packed = pack(augment(sample))
    inputs = packed["inputs"]
    assert inputs.shape == (3, 224, 224) and inputs.dtype == torch.uint8
    assert inputs.is_contiguous()
    assert packed["data_samples"] == {
        "label": 2,
        "meta": {"ori_shape": (300, 400), "img_shape": (224, 224)},
    }


def test_resize_center_crop_matches_opencv():
    image = rgb_image(300, 400)
    augment = Albumentations(
        [dict(type="SmallestMaxSize", max_size=256), dict(type="CenterCrop", height=224, width=224)]
    )
    out = augment({"image": image})["image"]
    # 300x400 -> 256x341 (shorter side 256), then rows 16:240, cols 58:282
    expected = cv2.resize(image, (341, 256), interpolation=cv2.INTER_LINEAR)[16:240, 58:282]
    np.testing.assert_array_equal(out, expected)


def test_pack_inputs_is_channel_first_rgb():
    image = rgb_image(5, 6)
    inputs = PackInputs()({"image": image})["inputs"]
    np.testing.assert_array_equal(inputs.numpy(), image.transpose(2, 0, 1))


def test_horizontal_flip_moves_boxes():
    augment = Albumentations([dict(type="HorizontalFlip", p=1.0)])
    sample = {
        "image": rgb_image(50, 100),
        "boxes": np.array([[10, 20, 30, 40], [0, 0, 100, 50]], np.float32),
        "labels": np.array([4, 1], np.int64),
    }
    out = augment(sample)
    # x' = width - x, with x_min and x_max swapping roles
    np.testing.assert_allclose(out["boxes"], [[70, 20, 90, 40], [0, 0, 100, 50]], atol=1e-4)
    assert out["boxes"].dtype == np.float32
    np.testing.assert_array_equal(out["labels"], [4, 1])
    np.testing.assert_array_equal(out["image"], sample["image"][:, ::-1])


def test_crop_drops_boxes_with_their_labels():
    augment = Albumentations([dict(type="Crop", x_min=0, y_min=0, x_max=50, y_max=50)])
    out = augment(
        {
            "image": rgb_image(100, 100),
            "boxes": np.array([[60, 60, 80, 80], [10, 10, 20, 30]], np.float32),
            "labels": np.array([2, 5], np.int64),
        }
    )
    np.testing.assert_allclose(out["boxes"], [[10, 10, 20, 30]], atol=1e-4)
    np.testing.assert_array_equal(out["labels"], [5])
    assert out["meta"]["img_shape"] == (50, 50)

    empty = augment(
        {
            "image": rgb_image(100, 100),
            "boxes": np.array([[60, 60, 80, 80]], np.float32),
            "labels": [1],
        }
    )
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_mask_is_resized_nearest_and_packed():
    mask = np.zeros((40, 60), np.uint8)
    mask[:, 20:40] = 3
    mask[10:30, :] = 255
    augment = Albumentations([dict(type="Resize", height=37, width=53)])
    out = augment({"image": rgb_image(40, 60), "mask": mask})
    assert out["mask"].shape == (37, 53) and out["mask"].dtype == np.uint8
    assert set(np.unique(out["mask"])) == {0, 3, 255}
    # The image itself is interpolated (albumentations' default, linear).
    image = rgb_image(40, 60)
    np.testing.assert_array_equal(
        augment({"image": image})["image"],
        cv2.resize(image, (53, 37), interpolation=cv2.INTER_LINEAR),
    )

    packed = PackInputs()(out)["data_samples"]
    assert packed["mask"].dtype == torch.uint8 and packed["mask"].shape == (37, 53)


def test_boxes_and_labels_are_packed_as_tensors():
    out = PackInputs(meta_keys=["img_shape"])(
        {
            "image": rgb_image(8, 8),
            "boxes": np.array([[1, 2, 3, 4]], np.float32),
            "labels": np.array([6]),
            "meta": {"img_shape": (8, 8), "img_path": "x.jpg"},
        }
    )["data_samples"]
    assert out["boxes"].dtype == torch.float32 and out["boxes"].tolist() == [[1, 2, 3, 4]]
    assert out["labels"].dtype == torch.int64 and out["labels"].tolist() == [6]
    assert out["meta"] == {"img_shape": (8, 8)}


def test_pack_inputs_rejects_normalised_images():
    with pytest.raises(TypeError, match="data preprocessor"):
        PackInputs()({"image": rgb_image(4, 4).astype(np.float32) / 255})


def test_unknown_type_is_named_with_suggestion():
    with pytest.raises(ValueError, match="'RandomResizedCorp'.*RandomResizedCrop"):
        Albumentations([dict(type="RandomResizedCorp", size=(224, 224))])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="HorizontalFlip got unknown argument.*'probability'"):
        Albumentations([dict(type="HorizontalFlip", probability=0.5)])
    with pytest.raises(ValueError, match=r"albumentations.RandomResizedCrop\("):
        Albumentations([dict(type="RandomResizedCrop", size=(224,))])
    with pytest.raises(TypeError, match="albumentations transform or a config dict"):
        Albumentations([lambda image: image])


def test_mtvision_albumentations_transforms_are_found_by_name():
    augment = Albumentations(
        [
            dict(type="ZoomOut", ratio_range=(2.0, 2.0), p=1.0),
            dict(type="OneOf", transforms=[dict(type="MinIoURandomCrop", min_ious=(0.5,))]),
        ]
    )
    assert isinstance(augment.transforms[0], ZoomOut)
    assert isinstance(augment.transforms[1].transforms[0], MinIoURandomCrop)
    zoom_out = Albumentations([dict(type="ZoomOut", ratio_range=(2.0, 2.0), p=1.0)])
    assert zoom_out({"image": rgb_image(10, 20)})["image"].shape == (20, 40, 3)
    with pytest.raises(ValueError, match="'ZoomOutt'.*did you mean ZoomOut"):
        Albumentations([dict(type="ZoomOutt")])
    with pytest.raises(ValueError, match="mtvision.data.ssd_transforms.ZoomOut got unknown"):
        Albumentations([dict(type="ZoomOut", ratio=2.0)])
    # only what the module exports: ssd_transforms imports albumentations' BaseCrop
    with pytest.raises(ValueError, match="unknown albumentations transform type 'BaseCrop'"):
        Albumentations([dict(type="BaseCrop")])


def test_built_objects_and_nested_compositions():
    augment = Albumentations(
        [
            A.HorizontalFlip(p=1.0),
            dict(type="OneOf", transforms=[dict(type="VerticalFlip", p=1.0)], p=1.0),
        ]
    )
    image = rgb_image(6, 7)
    np.testing.assert_array_equal(augment({"image": image})["image"], image[::-1, ::-1])


def test_augmentations_follow_the_torch_seed():
    cfg = [dict(type="RandomResizedCrop", size=(32, 32)), dict(type="HorizontalFlip", p=0.5)]
    image = rgb_image(100, 120)

    def run(seed):
        torch.manual_seed(seed)
        augment = Albumentations(cfg)
        return [augment({"image": image})["image"] for _ in range(3)]

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


class _SameImageDataset(torch.utils.data.Dataset):
    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.image = rgb_image(64, 64)

    def __len__(self):
        return 4

    def __getitem__(self, idx):
        return self.pipeline({"image": self.image, "label": idx})


def test_data_loader_workers_draw_different_augmentations():
    augment = Albumentations([dict(type="RandomResizedCrop", size=(16, 16))])
    pack = PackInputs()
    torch.manual_seed(0)
    loader = DataLoader(
        _SameImageDataset(lambda s: pack(augment(s))),
        batch_size=1,
        num_workers=2,
        collate_fn=collate_samples,
    )
    crops = [batch["inputs"][0] for batch in loader]
    # samples 0 and 1 come from different workers, each one's first draw
    assert not torch.equal(crops[0], crops[1])


def test_collate_gives_lists_in_batch_order():
    collate = FUNCTIONS.get("collate_samples")
    samples = [
        PackInputs()({"image": rgb_image(4 + i, 5), "label": i, "meta": {"sample_idx": i}})
        for i in range(3)
    ]
    batch = collate(samples)
    assert set(batch) == {"inputs", "data_samples"}
    assert isinstance(batch["inputs"], list) and isinstance(batch["data_samples"], list)
    assert [tuple(t.shape) for t in batch["inputs"]] == [(3, 4, 5), (3, 5, 5), (3, 6, 5)]
    assert [d["label"] for d in batch["data_samples"]] == [0, 1, 2]


@pytest.mark.parametrize("box", [[0, 0, 50, 10], [-1, 4, 19, 24], [5, 5, 5, 9]])
def test_boxes_outside_the_image_never_reach_albumentations(box):
    # A box beyond the image (e.g. json width/height disagreeing with the file, a 0-based
    # xmin=0 in VOC), or an empty one, in a pipeline without LoadImage.
    transform = Albumentations([dict(type="HorizontalFlip", p=1.0)])
    sample = {
        "image": rgb_image(20, 30),
        "boxes": np.array([box], np.float32),
        "labels": np.array([0]),
        "meta": {"img_path": "data/coco/val2017/000042.jpg"},
    }
    with pytest.raises(AnnotationError, match=r"000042\.jpg: box 0 .* leaves the 30x20 image"):
        transform(sample)


@pytest.mark.parametrize(
    "image, mask",
    [(rgb_image(20, 30), np.zeros((20, 31), np.uint8)), (np.zeros((0, 5, 3), np.uint8), None)],
    ids=["mask-size", "opencv-refuses"],
)
def test_albumentations_errors_name_the_sample_file(image, mask):
    transform = Albumentations([dict(type="Resize", height=4, width=4)])
    sample = {"image": image, "meta": {"img_path": "x/000042.jpg"}}
    if mask is not None:
        sample["mask"] = mask
    with pytest.raises(ValueError, match=r"000042\.jpg: albumentations failed"):
        transform(sample)


def write_rgb(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def test_load_image_clips_boxes_to_the_decoded_image(tmp_path):
    """No size stated (a VOC XML without <size>): the decoded image clips the boxes."""
    path = write_rgb(tmp_path / "a.png", rgb_image(30, 40))
    boxes = np.array([[-1, 4, 19, 24], [30, 20, 45, 35]], np.float32)
    out = LoadImage()({"img_path": path, "boxes": boxes, "labels": np.array([0, 1])})
    np.testing.assert_array_equal(out["boxes"], [[0, 4, 19, 24], [30, 20, 40, 30]])


def test_load_image_refuses_a_box_left_empty(tmp_path):
    path = write_rgb(tmp_path / "a.png", rgb_image(30, 40))
    sample = {"img_path": path, "boxes": np.array([[45, 4, 60, 24]], np.float32),
              "ann_path": "ann/a.xml"}  # fmt: skip
    with pytest.raises(AnnotationError, match=r"ann/a.xml: box 0 .* of image '.*a.png' lies "
                       r"outside the decoded 40x30 image"):  # fmt: skip
        LoadImage()(sample)


@pytest.mark.parametrize("stated", [(41, 30), (40, 29), (30, 40)])
def test_load_image_compares_the_stated_size_with_the_decoded_one(tmp_path, stated):
    path = write_rgb(tmp_path / "a.png", rgb_image(30, 40))
    sample = {"img_path": path, "width": stated[0], "height": stated[1], "ann_path": "gt.json"}
    with pytest.raises(
        AnnotationError,
        match=rf"gt.json: says image '.*a.png' is {stated[0]}x{stated[1]} \(width x height\), "
        r"but the file decodes to 40x30$",
    ):
        LoadImage()(sample)
    # Equal sizes pass, ints or floats alike (VOC's <size> is read as numbers).
    assert LoadImage()({**sample, "width": 40.0, "height": 30})["image"].shape == (30, 40, 3)
