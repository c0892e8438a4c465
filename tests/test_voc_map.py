"""VOCMeanAP: hand-computed APs (both modes), difficult objects, box convention, loop reference."""

import numpy as np
import pytest
import torch

from mtvision.evaluation.voc_map import (
    VOCMeanAP,
    average_precision,
    match_detections,
    voc_mean_ap,
)


def _image(pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, gt_difficult):
    return {
        "pred_boxes": np.asarray(pred_boxes, np.float64).reshape(-1, 4),
        "pred_scores": np.asarray(pred_scores, np.float64),
        "pred_labels": np.asarray(pred_labels, np.int64),
        "gt_boxes": np.asarray(gt_boxes, np.float64).reshape(-1, 4),
        "gt_labels": np.asarray(gt_labels, np.int64),
        "gt_difficult": np.asarray(gt_difficult, bool),
    }


def hand_case() -> list[dict]:
    """Class 0: two images, three objects (one difficult), five detections.

    By score: 0.9 hits A's object; 0.8 hits A's difficult object (ignored);
    0.7 hits nothing in B (FP); 0.6 hits B's object; 0.5 hits A's object again
    (duplicate, FP). Curve over the 4 counted detections, 2 positives:
    (recall, precision) = (.5, 1), (.5, .5), (1, 2/3), (1, .5).
    """
    image_a = _image(
        [[10, 10, 50, 50], [100, 100, 140, 140], [12, 10, 52, 50]],
        [0.9, 0.8, 0.5],
        [0, 0, 0],
        [[10, 10, 50, 50], [100, 100, 140, 140]],
        [0, 0],
        [False, True],
    )
    image_b = _image(
        [[0, 0, 20, 20], [60, 60, 100, 90]],
        [0.7, 0.6],
        [0, 0],
        [[60, 60, 100, 100]],
        [0],
        [False],
    )
    return [image_a, image_b]


def test_hand_computed_ap_both_modes():
    mean_ap, per_class = voc_mean_ap(hand_case(), num_classes=1, eval_mode="11points")
    # Recall thresholds 0..0.5 (6 of them) reach precision 1, 0.6..1 (5) reach 2/3.
    assert mean_ap == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, abs=1e-12)
    assert per_class == [{"num_gts": 2, "num_dets": 5, "recall": 1.0, "ap": mean_ap}]
    # Area under the envelope: 0.5 * 1 + 0.5 * 2/3.
    area_ap, _ = voc_mean_ap(hand_case(), num_classes=1, eval_mode="area")
    assert area_ap == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_difficult_objects_are_neither_hits_nor_misses():
    tp, fp = match_detections(
        np.array([[100.0, 100, 140, 140], [10, 10, 50, 50], [101, 100, 141, 140]]),
        np.array([0.9, 0.8, 0.7]),
        np.array([[10.0, 10, 50, 50], [100, 100, 140, 140]]),
        np.array([False, True]),
    )
    assert tp.tolist() == [False, True, False]
    assert fp.tolist() == [False, False, False]  # both detections of the difficult object vanish
    # As an ordinary object, the same box is found once and then duplicated.
    tp, fp = match_detections(
        np.array([[100.0, 100, 140, 140], [101, 100, 141, 140]]),
        np.array([0.9, 0.7]),
        np.array([[100.0, 100, 140, 140]]),
        np.array([False]),
    )
    assert tp.tolist() == [True, False] and fp.tolist() == [False, True]
    # Only the difficult object in the image: no positives, AP undefined, excluded from the mean.
    only_difficult = _image([[0, 0, 10, 10]], [0.9], [1], [[0, 0, 10, 10]], [1], [True])
    mean_ap, per_class = voc_mean_ap([*hand_case(), only_difficult], num_classes=2)
    assert per_class[1]["num_gts"] == 0 and np.isnan(per_class[1]["ap"])
    assert mean_ap == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)


def test_box_convention_continuous_versus_legacy_voc():
    # 9 x 4 inside 9 x 9 is IoU 0.444 with continuous coordinates; as inclusive
    # pixel indices (VOC devkit) it is 10 x 5 inside 10 x 10: IoU 0.5, a hit.
    det, gt = np.array([[0.0, 0, 9, 4]]), np.array([[0.0, 0, 9, 9]])
    tp, _ = match_detections(det, np.array([1.0]), gt, np.array([False]))
    assert tp.tolist() == [False]
    tp, _ = match_detections(det, np.array([1.0]), gt, np.array([False]), legacy_coordinates=True)
    assert tp.tolist() == [True]


def test_average_precision_edge_cases():
    assert average_precision(np.zeros(0), np.zeros(0), "11points") == 0.0
    assert average_precision(np.zeros(0), np.zeros(0), "area") == 0.0
    # Recall 0.3 exactly: the 11-point thresholds come from np.arange, whose
    # "0.3" is 0.30000000000000004, so only t = 0, 0.1, 0.2 are reached.
    assert average_precision(np.array([0.3]), np.array([1.0]), "11points") == pytest.approx(3 / 11)
    with pytest.raises(ValueError, match="eval_mode"):
        average_precision(np.array([1.0]), np.array([1.0]), "voc2012")


def reference_voc_ap(results, cls, iou_threshold, eval_mode):
    """The VOC devkit's voc_eval, written out with loops: global score order,
    ignored detections kept as (0, 0) points, IoU with +0 pixel convention."""
    dets = []  # (score, image index, box)
    gts = {}
    npos = 0
    for i, r in enumerate(results):
        keep = r["gt_labels"] == cls
        gts[i] = {
            "boxes": r["gt_boxes"][keep],
            "difficult": r["gt_difficult"][keep],
            "taken": [False] * int(keep.sum()),
        }
        npos += int((~r["gt_difficult"][keep]).sum())
        for box, score, label in zip(
            r["pred_boxes"], r["pred_scores"], r["pred_labels"], strict=True
        ):
            if label == cls:
                dets.append((score, i, box))
    dets.sort(key=lambda d: -d[0])
    tp, fp = [], []
    for _, i, box in dets:
        best_iou, best = -1.0, -1
        for g, gt in enumerate(gts[i]["boxes"]):
            iw = min(box[2], gt[2]) - max(box[0], gt[0])
            ih = min(box[3], gt[3]) - max(box[1], gt[1])
            inter = max(iw, 0.0) * max(ih, 0.0)
            union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1])
            iou = inter / (union - inter)
            if iou > best_iou:
                best_iou, best = iou, g
        hit = miss = 0
        if best_iou >= iou_threshold:
            if not gts[i]["difficult"][best]:
                if not gts[i]["taken"][best]:
                    hit, gts[i]["taken"][best] = 1, True
                else:
                    miss = 1
        else:
            miss = 1
        tp.append(hit)
        fp.append(miss)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if eval_mode == "11points":
        return (
            sum(
                max([p for p, r in zip(precision, recall, strict=True) if r >= t], default=0.0)
                for t in np.arange(0.0, 1.1, 0.1)
            )
            / 11
        )
    mrec = [0.0, *recall, 1.0]
    mpre = [0.0, *precision, 0.0]
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    return sum((mrec[k + 1] - mrec[k]) * mpre[k + 1] for k in range(len(mrec) - 1))


def random_case(seed: int, num_images: int = 12, num_classes: int = 3) -> list[dict]:
    """Jittered copies of objects (hits, near misses, duplicates), random boxes, difficult flags."""
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(num_images):
        m = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 80, (m, 2))], axis=1)
        gt_labels = rng.integers(0, num_classes, m)
        copies = rng.integers(0, m, int(rng.integers(0, 2 * m + 1))) if m else np.zeros(0, int)
        near = gt[copies] + rng.normal(0, 6, (len(copies), 4))
        k = int(rng.integers(0, 4))
        xy = rng.uniform(0, 200, (k, 2))
        noise = np.concatenate([xy, xy + rng.uniform(10, 80, (k, 2))], axis=1)
        results.append(
            _image(
                np.concatenate([near, noise]),
                rng.uniform(0, 1, len(near) + k),
                np.concatenate([gt_labels[copies], rng.integers(0, num_classes, k)]),
                gt,
                gt_labels,
                rng.uniform(0, 1, m) < 0.2,
            )
        )
    return results


@pytest.mark.parametrize("eval_mode", ["11points", "area"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_loop_reference(eval_mode, seed):
    results = random_case(seed)
    mean_ap, per_class = voc_mean_ap(results, num_classes=3, eval_mode=eval_mode)
    expected = [reference_voc_ap(results, c, 0.5, eval_mode) for c in range(3)]
    assert [c["ap"] for c in per_class] == pytest.approx(expected, abs=1e-12)
    assert mean_ap == pytest.approx(np.mean(expected), abs=1e-12)
    assert 0.05 < mean_ap < 0.95  # hits and misses both present


def _prediction(image: dict) -> dict:
    """A model's prediction dict with the ground truth in meta['ann'], as tensors."""
    return {
        "boxes": torch.as_tensor(image["pred_boxes"], dtype=torch.float32),
        "scores": torch.as_tensor(image["pred_scores"], dtype=torch.float32),
        "labels": torch.as_tensor(image["pred_labels"]),
        "meta": {
            "img_id": "2008_000001",
            "ann": {
                "boxes": torch.as_tensor(image["gt_boxes"], dtype=torch.float32),
                "labels": torch.as_tensor(image["gt_labels"]),
                "difficult": torch.as_tensor(image["gt_difficult"]),
            },
        },
    }


def test_metric_reads_predictions_and_meta_ann():
    metric = VOCMeanAP(eval_mode="area")
    metric.dataset_meta = {"classes": ("shape", "unused")}
    metric.process({}, [_prediction(image) for image in hand_case()])
    metrics = metric.evaluate(size=2)
    assert metrics == {"pascal_voc/mAP": pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-6)}

    with pytest.raises(KeyError, match="meta\\['ann'\\]"):
        metric.process({}, [{"boxes": torch.zeros(0, 4), "meta": {"img_path": "a.jpg"}}])
    out_of_range = VOCMeanAP()
    out_of_range.dataset_meta = {"classes": ("shape",)}
    image = dict(hand_case()[1], pred_labels=np.array([0, 3]))
    out_of_range.process({}, [_prediction(image)])
    with pytest.raises(
        ValueError, match="image 2008_000001: label 3 is out of range for 1 classes"
    ):
        out_of_range.evaluate(size=1)
    with pytest.raises(ValueError, match="eval_mode"):
        VOCMeanAP(eval_mode="11point")


def test_metric_scores_only_the_datasets_selected_classes(tmp_path, logged_messages):
    """VOCDetection(classes=("cat",)) on images holding cats and dogs: perfect cat
    detections score 1.0, and the table lists only the cat."""
    import cv2

    from mtvision.data import VOCDetection

    root = tmp_path / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    objects = {"a": [("cat", 1, 1, 10, 10), ("dog", 20, 5, 40, 30)], "b": [("dog", 2, 2, 9, 9)]}
    for img_id, boxes in objects.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{img_id}.jpg"), np.zeros((40, 50, 3), np.uint8))
        xml = "".join(
            f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
            f"<ymax>{d}</ymax></bndbox></object>"
            for n, a, b, c, d in boxes
        )
        (root / "Annotations" / f"{img_id}.xml").write_text(f"<annotation>{xml}</annotation>")
    (root / "ImageSets" / "Main" / "test.txt").write_text("a\nb\n")
    dataset = VOCDetection(root, ann_file="ImageSets/Main/test.txt", classes=("cat",))
    metric = VOCMeanAP()
    metric.dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        metric.process(
            {},
            [{"boxes": torch.as_tensor(info["boxes"]), "labels": torch.as_tensor(info["labels"]),
              "scores": torch.ones(len(info["boxes"])), "meta": info["meta"]}],
        )  # fmt: skip
    assert metric.evaluate(size=len(dataset)) == {"pascal_voc/mAP": 1.0}
    (table,) = [m for m in logged_messages if m.startswith("VOC AP")]
    assert [line.split()[0] for line in table.splitlines()[2:-1]] == ["cat"]
