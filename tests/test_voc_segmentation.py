"""VOCSegmentation and LoadMask on tiny VOCdevkit trees written to tmp_path, and the
segmentation pipelines of the configs."""

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mtvision.data import LoadMask, MaskLoadError, VOCSegmentation
from mtvision.data.mask_io import load_index_mask
from mtvision.data.transforms import Albumentations
from mtvision.data.voc_segmentation import VOC_CLASSES
from mtvision.errors import AnnotationError
from mtvision.registry import DATASETS, TRANSFORMS
from mtvision.synthetic.shapes import SHAPE_CLASSES, generate_shapes_dataset
from mtvision.utils.palette import voc_colormap

VOC_CONFIG = "configs/deeplabv3_voc.py"
DEMO_CONFIG = "configs/demo/deeplabv3_shapes.py"
PIPELINE = [dict(type="LoadImage"), dict(type="LoadMask"), dict(type="PackInputs")]

# id -> (height, width); masks hold a few classes, 255 borders and a class > 20 nowhere.
IMAGES = {"2007_000032": (30, 40), "2007_000039": (24, 36), "2008_000002": (33, 27)}


def write_image(path, shape, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def index_mask(shape, seed=0, classes=(0, 1, 15, 20)):
    """A mask of ``classes`` in blocks with a 255 band, like VOC's object borders."""
    rng = np.random.default_rng(seed)
    mask = np.full(shape, classes[0], np.uint8)
    for value in classes[1:]:
        y, x = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
        mask[y : y + 8, x : x + 8] = value
    mask[:, shape[1] // 2] = 255
    return mask


def write_palette_png(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", mask.shape[::-1], np.ascontiguousarray(mask, np.uint8).tobytes())
    image.putpalette(voc_colormap().tobytes())
    image.save(path)


def write_gray_png(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(mask, np.uint8))
    assert image.mode == "L"
    image.save(path)


@pytest.fixture
def voc_root(tmp_path):
    """VOC2012 with train (2 ids), val (1 id) and train_aug (all 3, 'L' masks in SegmentationClassAug)."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for seed, (img_id, shape) in enumerate(IMAGES.items()):
        write_image(root / "JPEGImages" / f"{img_id}.jpg", shape, seed)
        mask = index_mask(shape, seed)
        write_palette_png(root / "SegmentationClass" / f"{img_id}.png", mask)
        write_gray_png(root / "SegmentationClassAug" / f"{img_id}.png", mask[::-1].copy())
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    ids = list(IMAGES)
    (lists / "train.txt").write_text(f"{ids[0]}\n{ids[1]}\n")
    (lists / "val.txt").write_text(f"{ids[2]}\n")
    (lists / "train_aug.txt").write_text("\n".join(ids) + "\n\n")
    return root


def test_lists_files_in_list_order_with_voc_metainfo(voc_root):
    dataset = VOCSegmentation(voc_root, split="train")
    assert len(dataset) == 2
    info = dataset.get_data_info(1)
    assert info["img_path"] == str(voc_root / "JPEGImages" / "2007_000039.jpg")
    assert info["seg_path"] == str(voc_root / "SegmentationClass" / "2007_000039.png")
    assert info["meta"] == {"img_id": "2007_000039"}
    assert info["num_classes"] == 21 and info["sample_idx"] == 1
    assert dataset.metainfo["classes"] == VOC_CLASSES and len(VOC_CLASSES) == 21
    palette = dataset.metainfo["palette"]
    assert len(palette) == 21
    assert (palette[0], palette[1], palette[15]) == ((0, 0, 0), (128, 0, 0), (192, 128, 128))


def test_masks_are_palette_indices_not_colours(voc_root):
    dataset = DATASETS.build(
        dict(type="VOCSegmentation", data_root=str(voc_root), split="val", pipeline=PIPELINE)
    )
    sample = dataset[0]
    expected = index_mask(IMAGES["2008_000002"], seed=2)
    assert sample["inputs"].shape == (3, 33, 27) and sample["inputs"].dtype == torch.uint8
    mask = sample["data_samples"]["mask"]
    assert mask.dtype == torch.uint8
    np.testing.assert_array_equal(mask.numpy(), expected)
    meta = sample["data_samples"]["meta"]
    assert meta["img_id"] == "2008_000002" and meta["ori_shape"] == (33, 27)
    assert meta["seg_path"] == str(voc_root / "SegmentationClass" / "2008_000002.png")


def test_train_aug_reads_grayscale_masks_from_segmentation_class_aug(voc_root):
    dataset = VOCSegmentation(voc_root, split="train_aug", pipeline=PIPELINE)
    assert len(dataset) == 3  # the trailing blank line is not an id
    assert dataset.get_data_info(2)["seg_path"] == str(
        voc_root / "SegmentationClassAug" / "2008_000002.png"
    )
    mask = dataset[2]["data_samples"]["mask"].numpy()
    np.testing.assert_array_equal(mask, index_mask(IMAGES["2008_000002"], seed=2)[::-1])


def test_mask_dir_and_list_file_are_arguments(voc_root, tmp_path):
    custom_list = tmp_path / "mine.txt"
    custom_list.write_text("2007_000032\n")
    dataset = VOCSegmentation(
        voc_root, split="train", ann_file=custom_list, mask_dir="SegmentationClassAug"
    )
    assert len(dataset) == 1
    assert dataset.get_data_info(0)["seg_path"].endswith("SegmentationClassAug/2007_000032.png")


def test_synthetic_classes_from_the_generator(tmp_path):
    generate_shapes_dataset(tmp_path, seed=0, num_train=4, num_val=2)
    classes = ("background", *SHAPE_CLASSES)
    dataset = VOCSegmentation(
        tmp_path / "VOCdevkit" / "VOC2012", split="val", classes=classes, pipeline=PIPELINE
    )
    assert dataset.metainfo["classes"] == classes
    assert dataset.metainfo["palette"] == [tuple(c) for c in voc_colormap(7).tolist()]
    assert len(dataset) == 2
    values = set(np.unique(dataset[0]["data_samples"]["mask"].numpy()).tolist())
    assert 0 in values and 255 in values and values <= {*range(7), 255}


def test_classes_from_openmmlab_metainfo(voc_root):
    dataset = VOCSegmentation(voc_root, metainfo=dict(classes=["background", "thing"]))
    assert dataset.metainfo["classes"] == ("background", "thing")
    assert dataset.get_data_info(0)["num_classes"] == 2
    assert len(dataset.metainfo["palette"]) == 2


# ------------------------------------------------------------------ bad input


def test_values_outside_the_classes_name_the_file_and_values(voc_root):
    bad = voc_root / "SegmentationClass" / "2007_000039.png"
    mask = index_mask(IMAGES["2007_000039"], seed=1)
    mask[0, :3] = (21, 40, 40)
    write_palette_png(bad, mask)
    dataset = VOCSegmentation(voc_root, split="train", pipeline=PIPELINE)
    with pytest.raises(MaskLoadError, match=r"values 21, 40 \(3 pixels\).*0\.\.20.*255") as info:
        dataset[1]
    assert str(bad) in str(info.value)


def test_image_and_mask_of_different_sizes_name_both_files(voc_root):
    bad = voc_root / "SegmentationClass" / "2007_000032.png"
    write_palette_png(bad, index_mask((31, 40)))
    dataset = VOCSegmentation(voc_root, split="train", pipeline=PIPELINE)
    with pytest.raises(MaskLoadError, match="40x31.*differs.*40x30") as info:
        dataset[0]
    assert str(bad) in str(info.value)
    assert str(voc_root / "JPEGImages" / "2007_000032.jpg") in str(info.value)


def test_missing_listed_files_fail_when_the_dataset_is_built(voc_root):
    lists = voc_root / "ImageSets" / "Segmentation"
    (lists / "val.txt").write_text("".join(f"gone_{i}\n" for i in range(4)) + "2008_000002\n")
    (voc_root / "SegmentationClass" / "2008_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="9 files") as info:
        VOCSegmentation(voc_root, split="val")
    message = str(info.value)
    assert str(lists / "val.txt") in message
    assert str(voc_root / "JPEGImages" / "gone_0.jpg") in message
    assert str(voc_root / "SegmentationClass" / "gone_0.png") in message
    assert "and 4 more" in message  # the first 5 are listed


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_masks_are_refused_with_a_hint(voc_root, mode):
    bad = voc_root / "SegmentationClass" / "2007_000032.png"
    colours = voc_colormap()[index_mask(IMAGES["2007_000032"])]
    Image.fromarray(colours).convert(mode).save(bad)
    dataset = VOCSegmentation(voc_root, split="train", pipeline=PIPELINE)
    with pytest.raises(MaskLoadError, match=f"colour \\({mode}\\) image.*index PNGs") as info:
        dataset[0]
    assert str(bad) in str(info.value)


def test_corrupt_mask_names_the_file(voc_root):
    bad = voc_root / "SegmentationClass" / "2007_000032.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(MaskLoadError, match="not a readable image") as info:
        load_index_mask(bad)
    assert str(bad) in str(info.value)


def test_missing_list_file_and_root(voc_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="train_aug_typo.txt.*does not exist"):
        VOCSegmentation(voc_root, split="train_aug_typo")
    with pytest.raises(FileNotFoundError, match="VOC data root .* does not exist"):
        VOCSegmentation(tmp_path / "nowhere")


def test_bad_masks_are_skipped_and_logged_in_skip_mode(voc_root, monkeypatch, logged_warnings):
    bad = voc_root / "SegmentationClass" / "2007_000032.png"
    write_palette_png(bad, np.full((30, 40), 99, np.uint8))
    dataset = VOCSegmentation(voc_root, split="train", pipeline=PIPELINE, on_bad_image="skip")
    monkeypatch.setattr(dataset, "_rand_another", lambda: 1)
    assert dataset[0]["data_samples"]["meta"]["img_id"] == "2007_000039"
    assert dataset.num_skipped_images == 1
    (warning,) = logged_warnings
    assert str(bad) in warning and "values 99" in warning


def test_load_mask_needs_the_image_first(voc_root):
    with pytest.raises(KeyError, match="LoadImage before it"):
        LoadMask()({"seg_path": str(voc_root / "SegmentationClass" / "2007_000032.png")})


# ------------------------------------------------------------------ config pipelines


def _pipeline_from(config, key):
    """The config's pipeline, built; masks checked against the 21 VOC classes of the fixture."""
    steps = Config.fromfile(config)[key]
    return [
        TRANSFORMS.build({**step, "num_classes": 21} if step["type"] == "LoadMask" else step)
        for step in steps
    ]


@pytest.mark.parametrize("config", [VOC_CONFIG, DEMO_CONFIG])
def test_train_pipeline_never_blends_mask_values(voc_root, config):
    crop = Config.fromfile(config)["crop_size"]
    pipeline = _pipeline_from(config, "train_pipeline")
    # Only classes 0, 1, 15 and 20 occur: bilinear resizing would create values in between.
    seen = set()
    torch.manual_seed(0)
    for img_id in list(IMAGES) * 4:
        results = {
            "img_path": str(voc_root / "JPEGImages" / f"{img_id}.jpg"),
            "seg_path": str(voc_root / "SegmentationClass" / f"{img_id}.png"),
        }
        for step in pipeline:
            results = step(results)
        mask = results["data_samples"]["mask"]
        assert mask.shape == (crop, crop) and results["inputs"].shape == (3, crop, crop)
        seen |= set(mask.unique().tolist())
    assert seen == {0, 1, 15, 20, 255}


@pytest.mark.parametrize("config", [VOC_CONFIG, DEMO_CONFIG])
def test_padding_fills_the_mean_colour_and_ignore(config):
    cfg = Config.fromfile(config)
    crop = cfg["crop_size"]
    (step,) = [step for step in cfg["train_pipeline"] if step["type"] == "Albumentations"]
    (pad,) = [t for t in step["transforms"] if t["type"] == "PadIfNeeded"]
    image = np.full((10, 12, 3), 7, np.uint8)
    out = Albumentations([pad])({"image": image, "mask": np.ones((10, 12), np.uint8)})
    assert out["image"].shape == (crop, crop, 3)
    # Pads bottom/right: the image stays top-left, as the data preprocessor pads batches.
    assert (out["image"][:10, :12] == 7).all() and (out["mask"][:10, :12] == 1).all()
    assert out["image"][-1, -1].tolist() == [124, 116, 104]  # ImageNet mean, RGB
    assert (out["mask"][10:] == 255).all() and (out["mask"][:, 12:] == 255).all()


@pytest.mark.parametrize("config", [VOC_CONFIG, DEMO_CONFIG])
def test_test_pipeline_keeps_the_original_size(voc_root, config):
    pipeline = _pipeline_from(config, "test_pipeline")[:-1]  # up to PackInputs
    results = {
        "img_path": str(voc_root / "JPEGImages" / "2007_000039.jpg"),
        "seg_path": str(voc_root / "SegmentationClass" / "2007_000039.png"),
    }
    for step in pipeline:
        results = step(results)
    assert results["meta"]["img_shape"] == results["meta"]["ori_shape"] == (24, 36)
    np.testing.assert_array_equal(results["mask"], index_mask((24, 36), seed=1))


def test_classes_that_are_a_subset_of_voc_select_and_relabel(voc_root):
    """mmseg's rule: selected classes take their index in ``classes``, the rest is ignored."""
    dataset = VOCSegmentation(
        voc_root, split="val", classes=("background", "person"), pipeline=PIPELINE
    )
    assert dataset.metainfo["classes"] == ("background", "person")
    colours = voc_colormap()
    assert dataset.metainfo["palette"] == [tuple(colours[0]), tuple(colours[15])]
    (img_id,) = [i for i in IMAGES if i.startswith("2008")]
    stored = index_mask(IMAGES[img_id], seed=2)  # classes 0, 1, 15 and 20
    mask = dataset[0]["data_samples"]["mask"].numpy()
    expected = np.select([stored == 0, stored == 15], [0, 1], default=255)
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) == {0, 1, 255}
    # Masks are still checked against VOC's 21 classes before relabelling.
    assert dataset.get_data_info(0)["num_classes"] == 21


def test_duplicate_ids_empty_list_and_other_case_are_named(voc_root):
    lists = voc_root / "ImageSets" / "Segmentation"
    (lists / "twice.txt").write_text("2007_000032\r\n2007_000039\r\n2007_000032\r\n")
    with pytest.raises(AnnotationError, match=r"twice.txt: image id '2007_000032' is listed "
                       r"twice \(lines 1 and 3\)"):  # fmt: skip
        VOCSegmentation(voc_root, split="twice")
    (lists / "empty.txt").write_text("\n\n")
    with pytest.raises(AnnotationError, match="empty.txt: the image list is empty"):
        VOCSegmentation(voc_root, split="empty")
    image = voc_root / "JPEGImages" / "2008_000002.jpg"
    image.rename(image.with_suffix(".JPG"))
    with pytest.raises(FileNotFoundError, match=r"2008_000002.jpg \(the folder has "
                       r"'2008_000002.JPG': names are case-sensitive; set img_suffix"):  # fmt: skip
        VOCSegmentation(voc_root, split="val")
    assert len(VOCSegmentation(voc_root, split="val", img_suffix=".JPG")) == 1


def test_model_classes_must_be_the_mask_classes(voc_root):
    """Mask values are class indices: a model with other classes cannot be scored here."""
    dataset = VOCSegmentation(voc_root, split="val", model_classes=VOC_CLASSES)
    assert dataset.metainfo["classes"] == VOC_CLASSES
    model_classes = ("background", "cat", "dog")
    with pytest.raises(AnnotationError) as info:
        VOCSegmentation(voc_root, split="val", model_classes=model_classes)
    assert str(info.value) == (
        f"{voc_root / 'SegmentationClass'}: the data's classes {str(list(VOC_CLASSES[:20]))[:-1]}"
        f", ... (21 in all)] are not the model's {list(model_classes)}; their labels (index = class) cannot be mapped by name "
        "here"
    )
