"""MeanIoU against a direct per-class numpy computation, its conventions and its errors."""

import math

import numpy as np
import pytest
import torch

from mtvision.evaluation.miou_metric import MeanIoU, confusion_matrix
from mtvision.registry import METRICS

IGNORE = 255


def _prediction(pred, gt, img_path="img.jpg"):
    return {
        "pred_mask": torch.as_tensor(pred, dtype=torch.int64),
        "gt_mask": torch.as_tensor(gt, dtype=torch.uint8),
        "meta": {"img_path": img_path},
    }


def _random_masks(seed, count, num_classes, ignore_fraction=0.1):
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(count):
        shape = tuple(rng.integers(5, 40, size=2))
        gt = rng.integers(0, num_classes, shape).astype(np.uint8)
        gt[rng.random(shape) < ignore_fraction] = IGNORE
        # Predictions agree with gt on about half the pixels, so IoUs are far from 0 and 1.
        pred = np.where(rng.random(shape) < 0.5, gt, rng.integers(0, num_classes, shape))
        pred[pred == IGNORE] = rng.integers(0, num_classes)
        masks.append((pred.astype(np.int64), gt))
    return masks


def _direct_scores(masks, num_classes):
    """mIoU, mAcc, aAcc by counting pixels class by class over all images (no confusion matrix)."""
    pred = np.concatenate([p.ravel() for p, _ in masks])
    gt = np.concatenate([g.ravel() for _, g in masks])
    valid = gt != IGNORE
    ious, accs = [], []
    for c in range(num_classes):
        in_gt, in_pred = (gt == c) & valid, (pred == c) & valid
        union = np.sum(in_gt | in_pred)
        if union:
            ious.append(np.sum(in_gt & in_pred) / union)
        if in_gt.sum():
            accs.append(np.sum(in_gt & in_pred) / in_gt.sum())
    return {
        "mIoU": float(np.mean(ious)),
        "mAcc": float(np.mean(accs)),
        "aAcc": float(np.sum((pred == gt) & valid) / valid.sum()),
    }


def _run(metric, masks, batch=3):
    for start in range(0, len(masks), batch):
        metric.process({}, [_prediction(p, g) for p, g in masks[start : start + batch]])
    return metric.compute_metrics(metric.results)


@pytest.mark.parametrize("num_classes", [2, 7, 21])
def test_matches_direct_numpy_computation_on_random_masks(num_classes):
    masks = _random_masks(seed=num_classes, count=11, num_classes=num_classes)
    metrics = _run(MeanIoU(num_classes=num_classes), masks)
    expected = _direct_scores(masks, num_classes)
    assert set(metrics) == {"mIoU", "mAcc", "aAcc"}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12)
    assert 0.3 < metrics["mIoU"] < 0.8  # the data are neither trivial nor hopeless


def test_absent_classes_hand_computed():
    # 4 classes. Class 2 is predicted once but never in gt (IoU 0, accuracy undefined);
    # class 3 appears nowhere (IoU and accuracy undefined, left out of both means).
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, IGNORE]], np.uint8)
    pred = np.array([[0, 0, 1, 2], [0, 1, 1, 3]], np.int64)  # the 3 sits on an ignored pixel
    metric = MeanIoU(num_classes=4)
    metric.process({}, [_prediction(pred, gt)])
    (matrix,) = metric.results
    assert matrix.tolist() == [[3, 1, 0, 0], [0, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    metrics = metric.compute_metrics(metric.results)
    # IoU: class 0 = 3/4, class 1 = 2/(3+3-2) = 1/2, class 2 = 0/1 = 0, class 3 undefined.
    assert metrics["mIoU"] == pytest.approx((0.75 + 0.5 + 0.0) / 3, abs=1e-15)
    # Accuracy: class 0 = 3/4, class 1 = 2/3; classes 2 and 3 have no gt pixel.
    assert metrics["mAcc"] == pytest.approx((0.75 + 2 / 3) / 2, abs=1e-15)
    assert metrics["aAcc"] == pytest.approx(5 / 7, abs=1e-15)


def test_results_split_over_processes_give_the_same_numbers():
    masks = _random_masks(seed=1, count=9, num_classes=5)
    whole = MeanIoU(num_classes=5)
    expected = _run(whole, masks)
    first, second = MeanIoU(num_classes=5), MeanIoU(num_classes=5)
    _run(first, masks[:4], batch=2)
    _run(second, masks[4:], batch=4)
    # mmengine's collect_results concatenates the processes' result lists.
    assert MeanIoU(num_classes=5).compute_metrics(first.results + second.results) == expected
    assert len(first.results) + len(second.results) == len(masks)  # one matrix per image


def test_repeated_images_of_a_padded_sampler_are_dropped_by_evaluate():
    # mmengine's distributed sampler repeats images to even out shards; evaluate(size)
    # cuts the gathered list to the dataset length, which works with one result per image.
    masks = _random_masks(seed=2, count=5, num_classes=3)
    expected = _run(MeanIoU(num_classes=3), masks)
    metric = MeanIoU(num_classes=3)
    for pred, gt in [*masks, masks[0]]:
        metric.process({}, [_prediction(pred, gt)])
    assert metric.evaluate(size=len(masks)) == {f"seg/{k}": v for k, v in expected.items()}
    assert metric.results == []


def test_num_classes_and_table_names_come_from_the_dataset(logged_messages):
    metric = METRICS.build(dict(type="MeanIoU"))
    metric.dataset_meta = {"classes": ("background", "circle", "square")}
    gt = np.array([[0, 1], [2, 2]], np.uint8)
    metric.process({}, [_prediction(gt.astype(np.int64), gt)])
    assert metric.results[0].shape == (3, 3)
    assert metric.evaluate(size=1) == {"seg/mIoU": 1.0, "seg/mAcc": 1.0, "seg/aAcc": 1.0}
    table = next(message for message in logged_messages if "IoU" in message)
    assert "circle" in table and "square" in table and "1.0000" in table


def test_confusion_matrix_rows_are_truth_and_columns_prediction():
    gt = torch.tensor([0, 0, 1, IGNORE])
    pred = torch.tensor([1, 1, 1, 0])
    assert confusion_matrix(pred, gt, 2).tolist() == [[0, 2], [0, 1]]


def test_different_shapes_are_a_clear_error():
    metric = MeanIoU(num_classes=3)
    with pytest.raises(ValueError, match=r"a/b\.jpg.*\(4, 5\).*\(5, 4\)"):
        metric.process({}, [_prediction(np.zeros((4, 5)), np.zeros((5, 4)), "a/b.jpg")])


def test_out_of_range_values_are_errors():
    metric = MeanIoU(num_classes=3)
    with pytest.raises(ValueError, match=r"x\.jpg: predicted class indices \[3\]"):
        metric.process({}, [_prediction(np.full((2, 2), 3), np.zeros((2, 2)), "x.jpg")])
    with pytest.raises(ValueError, match=r"y\.jpg: ground-truth values \[7\]"):
        metric.process({}, [_prediction(np.zeros((2, 2)), np.full((2, 2), 7), "y.jpg")])


def test_missing_keys_and_class_count():
    with pytest.raises(KeyError, match="gt_mask"):
        MeanIoU(num_classes=2).process({}, [{"pred_mask": torch.zeros(2, 2)}])
    with pytest.raises(ValueError, match="set num_classes"):
        MeanIoU().process({}, [_prediction(np.zeros((2, 2)), np.zeros((2, 2)))])
    metric = MeanIoU(num_classes=4)
    metric.dataset_meta = {"classes": ("a", "b")}
    with pytest.raises(ValueError, match="num_classes=4 but the dataset has 2 classes"):
        metric.process({}, [_prediction(np.zeros((2, 2)), np.zeros((2, 2)))])


def test_all_ignored_is_an_error_not_nan():
    metric = MeanIoU(num_classes=2)
    metric.process({}, [_prediction(np.zeros((3, 3)), np.full((3, 3), IGNORE))])
    with pytest.raises(ValueError, match="no labelled pixel"):
        metric.compute_metrics(metric.results)


def test_nan_never_reaches_the_means():
    # Only class 0 occurs; the other 20 classes are undefined and must not turn the mean NaN.
    gt = np.zeros((3, 3), np.uint8)
    metric = MeanIoU(num_classes=21)
    metric.process({}, [_prediction(gt.astype(np.int64), gt)])
    metrics = metric.compute_metrics(metric.results)
    assert not any(math.isnan(v) for v in metrics.values())
    assert metrics["mIoU"] == 1.0


def test_scores_only_the_classes_a_dataset_selects(tmp_path, logged_messages):
    """VOCSegmentation(classes=subset of VOC): masks relabelled, other classes ignored, and
    MeanIoU (given the dataset's metainfo) scores and lists only the selected classes."""
    from PIL import Image

    from mtvision.data import VOCSegmentation

    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    stored = np.zeros((12, 16), np.uint8)
    stored[2:6, 2:8] = 8  # cat
    stored[6:10, 8:14] = 12  # dog: not selected
    stored[:, 15] = IGNORE
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "JPEGImages" / "a.jpg")
    Image.fromarray(stored).save(root / "SegmentationClass" / "a.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    dataset = VOCSegmentation(
        root,
        split="val",
        classes=("background", "cat"),
        pipeline=[dict(type="LoadImage"), dict(type="LoadMask"), dict(type="PackInputs")],
        test_mode=True,
    )
    gt = dataset[0]["data_samples"]["mask"]
    assert sorted(gt.unique().tolist()) == [0, 1, IGNORE]
    # Perfect on the selected classes; "cat" wherever the dog (now ignored) was.
    pred = torch.where(gt == IGNORE, 1, gt.long())
    metric = MeanIoU()
    metric.dataset_meta = dataset.metainfo
    metric.process({}, [_prediction(pred, gt)])
    assert metric.evaluate(size=1) == {"seg/mIoU": 1.0, "seg/mAcc": 1.0, "seg/aAcc": 1.0}
    (table,) = [m for m in logged_messages if m.lstrip().startswith("class")]
    assert [line.split()[0] for line in table.strip().splitlines()[1:]] == ["background", "cat"]
