"""Tests for the synthetic shapes dataset and its three on-disk layouts."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from engine_toy import load_tool
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mtvision.synthetic.shapes import (
    COCO_CATEGORY_IDS,
    SHAPE_CLASSES,
    VOC_IGNORE_INDEX,
    Scene,
    ShapeInstance,
    generate_shapes_dataset,
    mask_to_polygons,
    render_scene,
    voc_class_mask,
    voc_colormap,
)

REPO = Path(__file__).resolve().parents[1]
NUM_TRAIN, NUM_VAL = 48, 18
C = len(SHAPE_CLASSES)

# pycocotools 2.0.x calls np.array(copy=False) internally under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    summary = generate_shapes_dataset(root, seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL)
    return root, summary


@pytest.fixture(scope="module")
def cocos(dataset):
    root, _ = dataset
    return {
        split: COCO(str(root / "coco" / "annotations" / f"instances_{split}2017.json"))
        for split in ("train", "val")
    }


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _voc_mask(root: Path, name: str) -> Image.Image:
    return Image.open(root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{name}.png")


def _stem(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0]


# ------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    kwargs = dict(num_train=12, num_val=6)
    generate_shapes_dataset(tmp_path / "a", seed=3, **kwargs)
    generate_shapes_dataset(tmp_path / "b", seed=3, **kwargs)
    generate_shapes_dataset(tmp_path / "c", seed=4, **kwargs)
    a, b, c = (_digests(tmp_path / n) for n in "abc")
    # 18 images x 4 image files (+ PNG) + 2 COCO json + 3 lists + info
    assert len(a) == 18 * 4 + 2 + 3 + 1
    assert a == b
    coco_json = "coco/annotations/instances_train2017.json"
    assert a[coco_json] != c[coco_json]
    jpeg = "coco/train2017/shapes_train_000000.jpg"
    assert a[jpeg] != c[jpeg]


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="min_size"):
        generate_shapes_dataset(tmp_path, min_size=100, max_size=50)
    with pytest.raises(ValueError, match="at least one image"):
        generate_shapes_dataset(tmp_path, num_train=0)


# ------------------------------------------------------------ scene rendering


def test_render_scene_masks_are_disjoint_and_dominant_first():
    rng = np.random.default_rng(7)
    for i in range(20):
        scene = render_scene(rng, width=150, height=110, dominant_class=i % C)
        assert scene.image.shape == (110, 150, 3) and scene.image.dtype == np.uint8
        assert scene.label == i % C and scene.instances[0].is_dominant
        assert 1 <= len(scene.instances) <= 5
        stacked = np.stack([inst.mask for inst in scene.instances])
        assert stacked.dtype == bool
        assert stacked.sum(axis=0).max() == 1  # visible masks never overlap
        areas = stacked.sum(axis=(1, 2))
        assert areas.min() >= 20
        assert areas[0] == areas.max() and (areas[1:] < areas[0]).all()


def test_voc_colormap_matches_reference_colours():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[15].tolist() == [192, 128, 128]  # VOC "person"
    assert cmap[255].tolist() == [224, 224, 192]  # VOC ignore / border


def test_mask_to_polygons_round_trips_through_pycocotools():
    mask = np.zeros((20, 24), bool)
    mask[2:9, 3:10] = True  # block
    mask[9, 10] = mask[10, 11] = mask[11, 12] = True  # diagonal tail, corner-connected
    mask[15:18, 18:23] = True  # second component
    mask[17, 2] = True  # single pixel
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3 and all(len(p) >= 6 for p in polygons)
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, 20, 24)))
    np.testing.assert_array_equal(decoded.astype(bool), mask)


def test_voc_class_mask_ignore_band_follows_object_outlines():
    height, width = 60, 100
    square = np.zeros((height, width), bool)
    square[20:40, 10:30] = True
    left = np.zeros((height, width), bool)
    left[20:40, 50:70] = True
    right = np.zeros((height, width), bool)
    right[20:40, 70:90] = True  # touches `left` at column 69|70
    scene = Scene(
        image=np.zeros((height, width, 3), np.uint8),
        instances=[
            ShapeInstance(SHAPE_CLASSES.index("square"), square, True),
            ShapeInstance(SHAPE_CLASSES.index("star"), left, False),
            ShapeInstance(SHAPE_CLASSES.index("cross"), right, False),
        ],
    )
    plain = voc_class_mask(scene, band=False)
    banded = voc_class_mask(scene)
    ignore = banded == VOC_IGNORE_INDEX
    np.testing.assert_array_equal(banded[~ignore], plain[~ignore])
    assert set(np.unique(plain).tolist()) == {0, 2, 4, 5}
    row = np.flatnonzero(ignore[30])
    # object/background: 1 px outside + outline + 1 px inside = 3 px
    assert row[row < 40].tolist() == [9, 10, 11, 28, 29, 30]
    # object/object: both outlines are marked, so 4 px
    assert row[row >= 40].tolist() == [49, 50, 51, 68, 69, 70, 71, 88, 89, 90]


# ------------------------------------------------------------ ImageNet layout


def test_imagenet_class_folders(dataset):
    root, _ = dataset
    for split, count in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        split_dir = root / "imagenet" / split
        assert sorted(p.name for p in split_dir.iterdir()) == sorted(SHAPE_CLASSES)
        per_class = {name: sorted((split_dir / name).glob("*.jpg")) for name in SHAPE_CLASSES}
        # round-robin balance: every class gets count / C images
        assert {name: len(files) for name, files in per_class.items()} == {
            name: count // C for name in SHAPE_CLASSES
        }
        for files in per_class.values():
            image = _read_rgb(files[0])
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_same_jpeg_bytes_in_all_layouts(dataset):
    root, _ = dataset
    for path in (root / "imagenet" / "val").rglob("*.jpg"):
        data = path.read_bytes()
        assert (root / "coco" / "val2017" / path.name).read_bytes() == data
        assert (root / "VOCdevkit" / "VOC2012" / "JPEGImages" / path.name).read_bytes() == data


# ------------------------------------------------------------ COCO layout


def test_coco_categories_are_non_contiguous_and_referenced_ids_exist(cocos):
    for coco in cocos.values():
        cat_ids = coco.getCatIds()
        assert cat_ids == list(COCO_CATEGORY_IDS) == [1, 2, 4, 5, 7, 9]
        assert cat_ids != list(range(1, C + 1))
        assert [c["name"] for c in coco.loadCats(cat_ids)] == list(SHAPE_CLASSES)
        assert {c["supercategory"] for c in coco.loadCats(cat_ids)} == {"shape"}
        assert {a["category_id"] for a in coco.dataset["annotations"]} <= set(cat_ids)
        assert set(coco.getImgIds()) == {a["image_id"] for a in coco.dataset["annotations"]}
        ann_ids = [a["id"] for a in coco.dataset["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids)
    train_ids, val_ids = set(cocos["train"].getImgIds()), set(cocos["val"].getImgIds())
    assert len(train_ids) == NUM_TRAIN and len(val_ids) == NUM_VAL
    assert not train_ids & val_ids


def test_coco_boxes_areas_and_polygons_describe_the_visible_mask(cocos):
    for coco in cocos.values():
        for ann in coco.dataset["annotations"]:
            img = coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and ann["iscrowd"] == 0
            assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
            assert all(len(poly) >= 6 for poly in ann["segmentation"])
            mask = coco.annToMask(ann)
            assert mask.shape == (img["height"], img["width"])
            # polygons trace pixel outlines, so they rasterise back exactly
            assert mask.sum() == ann["area"]
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == [
                x,
                y,
                w,
                h,
            ]


def test_coco_has_small_large_and_overlapping_objects(cocos):
    anns = [a for coco in cocos.values() for a in coco.dataset["annotations"]]
    max_sides = np.array([max(a["bbox"][2:]) for a in anns])
    assert (max_sides < 32).sum() >= 10
    assert (max_sides < 16).sum() >= 3
    assert (max_sides > 96).sum() >= 10

    def overlaps(a, b):
        ax, ay, aw, ah = a["bbox"]
        bx, by, bw, bh = b["bbox"]
        return min(ax + aw, bx + bw) > max(ax, bx) and min(ay + ah, by + bh) > max(ay, by)

    overlapping = sum(
        overlaps(a, b)
        for coco in cocos.values()
        for img_anns in coco.imgToAnns.values()
        for i, a in enumerate(img_anns)
        for b in img_anns[i + 1 :]
    )
    assert overlapping >= 10
    per_image = Counter(len(v) for coco in cocos.values() for v in coco.imgToAnns.values())
    assert per_image[1] > 0 and max(per_image) >= 4


def test_classification_label_is_largest_coco_annotation(dataset, cocos):
    root, _ = dataset
    for split, coco in cocos.items():
        for img in coco.dataset["images"]:
            anns = sorted(coco.imgToAnns[img["id"]], key=lambda a: -a["area"])
            if len(anns) > 1:
                assert anns[0]["area"] > anns[1]["area"]
            name = coco.cats[anns[0]["category_id"]]["name"]
            assert (root / "imagenet" / split / name / img["file_name"]).is_file()


# ------------------------------------------------------------ VOC layout


def test_voc_masks_are_palette_pngs_with_class_values_and_ignore_band(dataset):
    root, _ = dataset
    voc = root / "VOCdevkit" / "VOC2012"
    reference = voc_colormap().ravel().tolist()
    pngs = sorted((voc / "SegmentationClass").glob("*.png"))
    assert len(pngs) == NUM_TRAIN + NUM_VAL
    seen = set()
    for png in pngs:
        mask = Image.open(png)
        assert mask.mode == "P"
        assert mask.getpalette()[: len(reference)] == reference
        jpeg = Image.open(voc / "JPEGImages" / f"{png.stem}.jpg")
        assert mask.size == jpeg.size
        values = set(np.unique(np.asarray(mask)).tolist())
        assert values <= set(range(C + 1)) | {VOC_IGNORE_INDEX}
        assert {0, VOC_IGNORE_INDEX} <= values
        seen |= values
    assert seen == set(range(C + 1)) | {VOC_IGNORE_INDEX}


def test_voc_image_sets_match_files(dataset):
    root, _ = dataset
    voc = root / "VOCdevkit" / "VOC2012"
    sets = {
        name: (voc / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()
        for name in ("train", "val", "trainval")
    }
    assert sets["train"] == [f"shapes_train_{i:06d}" for i in range(NUM_TRAIN)]
    assert sets["val"] == [f"shapes_val_{i:06d}" for i in range(NUM_VAL)]
    assert sets["trainval"] == sets["train"] + sets["val"]
    assert sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg")) == sorted(sets["trainval"])
    assert sorted(p.stem for p in (voc / "SegmentationClass").glob("*.png")) == sorted(
        sets["trainval"]
    )


def test_voc_masks_agree_with_coco_polygons(dataset, cocos):
    root, _ = dataset
    for coco in cocos.values():
        for img in coco.dataset["images"]:
            voc = np.asarray(_voc_mask(root, _stem(img["file_name"])))
            expected = np.zeros_like(voc)
            for ann in coco.imgToAnns[img["id"]]:
                class_value = COCO_CATEGORY_IDS.index(ann["category_id"]) + 1
                expected[coco.annToMask(ann).astype(bool)] = class_value
            keep = voc != VOC_IGNORE_INDEX
            np.testing.assert_array_equal(voc[keep], expected[keep])
            # the band is a border, not most of the object
            foreground = expected > 0
            assert (~keep & foreground).sum() < 0.6 * foreground.sum()


# ------------------------------------------------------------ image statistics


def test_image_sizes_vary_and_backgrounds_are_textured(dataset, cocos):
    root, _ = dataset
    images = cocos["train"].dataset["images"]
    widths = {img["width"] for img in images}
    heights = {img["height"] for img in images}
    assert len(widths) >= 10 and len(heights) >= 10
    assert min(widths | heights) >= 96 and max(widths | heights) <= 192
    assert sum(img["width"] != img["height"] for img in images) >= len(images) // 2
    for img in images:
        pixels = _read_rgb(root / "coco" / "train2017" / img["file_name"]).astype(np.float64)
        background = np.asarray(_voc_mask(root, _stem(img["file_name"]))) == 0
        assert pixels[background].std(axis=0).mean() > 8.0, img["file_name"]


def test_shape_colour_does_not_identify_the_class(dataset, cocos):
    root, _ = dataset
    colours, labels = [], []
    for img in cocos["train"].dataset["images"]:
        pixels = _read_rgb(root / "coco" / "train2017" / img["file_name"]).astype(np.float64)
        dominant = max(cocos["train"].imgToAnns[img["id"]], key=lambda a: a["area"])
        colours.append(pixels[cocos["train"].annToMask(dominant).astype(bool)].mean(axis=0))
        labels.append(COCO_CATEGORY_IDS.index(dominant["category_id"]))
    colours, labels = np.array(colours), np.array(labels)
    for c in range(C):
        assert colours[labels == c].std(axis=0).mean() > 30  # each class spans many colours
    # leave-one-out nearest class mean on colour: near chance (1/6), far from a usable cue
    correct = 0
    for i in range(len(labels)):
        others = np.arange(len(labels)) != i
        means = np.array([colours[others & (labels == c)].mean(axis=0) for c in range(C)])
        correct += int(np.argmin(((means - colours[i]) ** 2).sum(axis=1)) == labels[i])
    assert correct / len(labels) < 0.45


# ------------------------------------------------------------ CLI


def test_cli_writes_all_layouts(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_demo_data.py"),
            "--out",
            str(out),
            "--seed",
            "1",
            "--num-train",
            "12",
            "--num-val",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "train: 12 images" in result.stdout and "val: 6 images" in result.stdout
    assert (out / "coco" / "annotations" / "instances_val2017.json").is_file()
    assert len(list((out / "imagenet" / "train").rglob("*.jpg"))) == 12
    assert (out / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").is_file()
    assert (out / "dataset_info.json").is_file()


def test_cli_reports_bad_arguments(tmp_path, capsys):
    # In-process: a second interpreter start (torch import via mtvision.data) costs seconds.
    main = load_tool("make_demo_data").main
    assert main(["--out", str(tmp_path), "--num-train", "0"]) == 2
    assert "at least one image" in capsys.readouterr().err
