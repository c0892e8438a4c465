"""ADE20KSegmentation on tiny ADEChallengeData2016 trees written to tmp_path: files, the
reduced labels (0 ignored, 1..150 -> 0..149), MLPerf's top-31 labels, mIoU with the
existing metric, and the annotation errors."""

import numpy as np
import pytest
from PIL import Image

from mtvision.data import ADE20K_CLASSES, ADE20KSegmentation, MaskLoadError
from mtvision.errors import AnnotationError
from mtvision.evaluation import MeanIoU

PIPELINE = [dict(type="LoadImage"), dict(type="LoadMask"), dict(type="PackInputs")]


def _write(root, split, stem, annotation, image_shape=None):
    image_shape = image_shape or annotation.shape
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (*image_shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "images" / split / f"{stem}.jpg")
    Image.fromarray(annotation, "L").save(root / "annotations" / split / f"{stem}.png")


def _annotation():
    mask = np.zeros((20, 30), np.uint8)  # 0 = "other"
    mask[:10, :10] = 1  # wall
    mask[10:, :10] = 13  # person
    mask[:, 20:] = 150  # flag
    mask[0, 25:] = 32  # seat: the 32nd class, outside the top 31
    return mask


def test_labels_are_reduced_and_the_files_listed_in_order(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    _write(root, "validation", "ADE_val_00000002", _annotation())
    _write(root, "validation", "ADE_val_00000001", _annotation()[:, ::-1].copy())
    dataset = ADE20KSegmentation(root, split="validation", pipeline=PIPELINE, test_mode=True)
    assert len(dataset) == 2 and dataset.metainfo["classes"] == ADE20K_CLASSES
    assert len(ADE20K_CLASSES) == 150 and len(dataset.metainfo["palette"]) == 150
    sample = dataset[1]["data_samples"]
    assert sample["meta"]["img_id"] == "ADE_val_00000002"
    mask = np.asarray(sample["mask"])
    assert mask[0, 0] == 0 and mask[15, 0] == 12 and mask[5, 25] == 149 and mask[0, 25] == 31
    assert mask[5, 15] == 255  # "other" is ignored
    assert sorted(np.unique(mask).tolist()) == [0, 12, 31, 149, 255]

    metric = MeanIoU()
    metric.dataset_meta = dataset.metainfo
    perfect = dict(pred_mask=np.where(mask == 255, 0, mask), gt_mask=mask)
    metric.process(None, [perfect])
    assert metric.compute_metrics(metric.results)["mIoU"] == pytest.approx(1.0)


def test_top_classes_keeps_31_and_calls_the_rest_background(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    _write(root, "training", "ADE_train_00000001", _annotation())
    dataset = ADE20KSegmentation(root, top_classes=31, pipeline=PIPELINE)
    assert dataset.metainfo["classes"][:2] == ("background", "wall")
    assert len(dataset.metainfo["classes"]) == 32
    mask = np.asarray(dataset[0]["data_samples"]["mask"])
    assert mask[0, 0] == 1 and mask[15, 0] == 13 and mask[5, 25] == 0 and mask[0, 25] == 0
    assert mask[5, 15] == 255


def test_a_value_above_150_is_an_error_naming_the_png(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    bad = _annotation()
    bad[3, 3] = 151
    _write(root, "training", "ADE_train_00000007", bad)
    dataset = ADE20KSegmentation(root, pipeline=PIPELINE)
    png = root / "annotations" / "training" / "ADE_train_00000007.png"
    with pytest.raises(
        MaskLoadError,
        match=rf"cannot load mask '{png}': values 151 \(1 pixels\) are neither a class index "
        r"\(0..150\) nor the ignore index 255",
    ):
        dataset[0]


def test_an_annotation_of_another_size_is_an_error_naming_both_files(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    _write(root, "training", "ADE_train_00000003", _annotation(), image_shape=(20, 31))
    dataset = ADE20KSegmentation(root, pipeline=PIPELINE)
    with pytest.raises(
        MaskLoadError,
        match=r"ADE_train_00000003.png': its size 30x20 \(WxH\) differs from its image "
        r"'.*ADE_train_00000003.jpg', 31x20",
    ):
        dataset[0]


def test_missing_annotations_folders_and_splits_are_named(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    _write(root, "training", "ADE_train_00000001", _annotation())
    (root / "images" / "training" / "ADE_train_00000002.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"1 images of .* have no annotation: .*"
                       r"ADE_train_00000002.png"):  # fmt: skip
        ADE20KSegmentation(root)
    with pytest.raises(FileNotFoundError, match=r"images/validation does not exist"):
        ADE20KSegmentation(root, split="validation")
    with pytest.raises(AnnotationError, match=r"split must be one of \('training', 'valid"):
        ADE20KSegmentation(root, split="val")
