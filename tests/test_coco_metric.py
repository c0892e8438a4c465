"""CocoMetric: both COCOeval backends agree, hand-checkable values, id mapping, bad input."""

import json

import numpy as np
import pytest
import torch

from mtvision.errors import AnnotationError
from mtvision.evaluation.coco_metric import (
    COCO_BBOX_STAT_NAMES,
    CocoMetric,
    classwise_ap_table,
    evaluate_bbox,
    load_coco_annotations,
    to_coco_results,
)

CATEGORY_IDS = [2, 5, 11, 13]  # non-contiguous; 13 has no ground truth at all
AREAS = {"small": 30**2, "medium": 60**2, "large": 120**2}


def _annotation(ann_id, image_id, category_id, bbox, iscrowd=0):
    # COCO's area is the mask area, a little smaller than the box.
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": 0.9 * bbox[2] * bbox[3],
        "iscrowd": iscrowd,
    }


def crafted_annotations() -> dict:
    """Small, medium and large objects, a crowd region, an image without objects."""
    sizes = {1: (200, 200), 2: (300, 300), 3: (100, 100), 4: (150, 150), 5: (120, 120)}
    annotations = [
        _annotation(1, 1, 2, [10, 10, 20, 20]),  # small
        _annotation(2, 1, 5, [50, 50, 50, 40]),  # medium
        _annotation(3, 1, 11, [0, 100, 150, 100]),  # large
        _annotation(4, 2, 2, [20, 20, 120, 110]),  # large
        _annotation(5, 2, 2, [150, 150, 100, 100], iscrowd=1),
        _annotation(6, 2, 5, [200, 20, 25, 25]),  # small
        _annotation(7, 4, 11, [30, 30, 40, 40]),  # medium
        _annotation(8, 4, 5, [80, 80, 45, 40]),  # medium
        _annotation(9, 5, 2, [5, 5, 15, 12]),  # small
    ]
    return {
        "images": [
            {"id": i, "file_name": f"{i:06d}.jpg", "width": w, "height": h}
            for i, (w, h) in sizes.items()
        ],
        "annotations": annotations,
        "categories": [{"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS],
    }


def _result(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def crafted_results() -> list[dict]:
    """Hits, misses, duplicates, detections on a crowd region and on an empty image.

    Image 4 gets no detections at all.
    """
    results = [
        _result(1, 2, [11, 11, 20, 20], 0.9),
        _result(1, 2, [100, 150, 20, 20], 0.3),
        _result(1, 5, [52, 48, 50, 40], 0.8),
        _result(1, 11, [0, 100, 150, 100], 0.95),
        _result(1, 11, [10, 110, 140, 90], 0.6),
        _result(1, 5, [50, 50, 50, 40], 0.2),
        _result(2, 2, [25, 25, 110, 100], 0.7),
        _result(2, 2, [160, 160, 80, 80], 0.85),
        _result(2, 2, [150, 150, 100, 100], 0.5),
        _result(2, 11, [0, 0, 50, 50], 0.65),
        _result(3, 5, [10, 10, 30, 30], 0.55),
        _result(3, 2, [40, 40, 50, 50], 0.1),
        _result(5, 2, [7, 6, 15, 12], 0.45),
        _result(5, 11, [5, 5, 15, 12], 0.35),
    ]
    # 15 detections of class 5 in image 2, only the last one hits: AR@10 < AR@100.
    rng = np.random.default_rng(0)
    for k in range(14):
        x, y = (float(v) for v in rng.integers(0, 250, size=2))
        score = 0.05 + 0.01 * k
        results.append(_result(2, 5, [x, y, 25.0, 25.0], score))
    results.append(_result(2, 5, [201, 21, 25, 25], 0.04))
    return results


def write_json(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def perfect_results(annotations: dict) -> list[dict]:
    return [
        _result(a["image_id"], a["category_id"], a["bbox"], 1.0)
        for a in annotations["annotations"]
        if not a["iscrowd"]
    ]


@pytest.mark.parametrize("img_ids", [None, [1, 2, 3]])
def test_backends_give_identical_stats(img_ids):
    annotations, results = crafted_annotations(), crafted_results()
    fast = evaluate_bbox(annotations, results, img_ids, backend="faster_coco_eval")
    reference = evaluate_bbox(annotations, results, img_ids, backend="pycocotools")
    np.testing.assert_allclose(fast.stats, reference.stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.precision, reference.precision, rtol=0, atol=1e-12)
    assert fast.category_ids == reference.category_ids == CATEGORY_IDS
    # The logged summaries too (faster-coco-eval adds AR@0.5 and AR@0.75 lines).
    assert len(reference.summary.splitlines()) == 12
    assert fast.summary.splitlines()[:12] == reference.summary.splitlines()
    # A real mix, not a degenerate case: every statistic is defined, the AP ones below 1.
    assert np.all(reference.stats > 0), reference.stats
    assert np.all(reference.stats[:6] < 1), reference.stats
    assert reference.stats[7] < reference.stats[8]  # AR@10 < AR@100


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_perfect_wrong_and_empty_detections(backend):
    annotations = crafted_annotations()
    perfect = evaluate_bbox(annotations, perfect_results(annotations), backend=backend)
    # pycocotools sums in another order: 1 - 2e-16 where faster-coco-eval gives 1.
    assert perfect.stats == pytest.approx([1.0] * 12, abs=1e-12)
    wrong = [
        dict(r, bbox=[r["bbox"][0] + 400, r["bbox"][1], r["bbox"][2], r["bbox"][3]])
        for r in perfect_results(annotations)
    ]
    assert evaluate_bbox(annotations, wrong, backend=backend).stats.tolist() == [0.0] * 12
    assert evaluate_bbox(annotations, [], backend=backend).stats.tolist() == [0.0] * 12


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_hand_checked_precision_and_recall(backend):
    annotations = crafted_annotations()
    # Image 5 holds one small object: a confident false positive, then an exact hit.
    # Precision at recall 1 is 1/2 at every IoU threshold, so AP = 0.5; the top-1
    # detection is the miss, so AR@1 = 0; medium/large have no objects: undefined (-1).
    results = [_result(5, 2, [90, 90, 15, 12], 0.9), _result(5, 2, [5, 5, 15, 12], 0.8)]
    evaluation = evaluate_bbox(annotations, results, [5], backend)
    stats = dict(zip(COCO_BBOX_STAT_NAMES, evaluation.stats, strict=True))
    assert stats["bbox_mAP"] == pytest.approx(0.5, abs=1e-12)
    assert stats["bbox_mAP_50"] == pytest.approx(0.5, abs=1e-12)
    assert stats["bbox_mAP_s"] == pytest.approx(0.5, abs=1e-12)
    assert stats["bbox_mAP_m"] == stats["bbox_mAP_l"] == -1.0
    assert stats["bbox_AR@1"] == 0.0 and stats["bbox_AR@10"] == 1.0

    # Image 2: a detection on the crowd region neither helps nor hurts.
    results = [
        _result(2, 2, [150, 150, 100, 100], 0.9),
        _result(2, 2, [20, 20, 120, 110], 0.5),
        _result(2, 5, [200, 20, 25, 25], 0.5),
    ]
    assert evaluate_bbox(annotations, results, [2], backend).stats[0] == pytest.approx(
        1.0, abs=1e-12
    )


def test_classwise_table_lists_each_category():
    annotations = crafted_annotations()
    evaluation = evaluate_bbox(annotations, perfect_results(annotations), backend="pycocotools")
    names = {c["id"]: c["name"] for c in annotations["categories"]}
    lines = classwise_ap_table(evaluation, names).splitlines()
    assert lines[0].split() == ["category", "AP", "AP50"]
    assert [line.split() for line in lines[1:]] == [
        ["cat2", "1.000", "1.000"],
        ["cat5", "1.000", "1.000"],
        ["cat11", "1.000", "1.000"],
        ["cat13", "-", "-"],  # no ground truth: no AP
    ]


def test_to_coco_results_converts_boxes_and_labels():
    entries = to_coco_results(
        7,
        np.array([[10.0, 20.0, 40.0, 60.0], [0.5, 1.5, 2.5, 4.0]], np.float32),
        np.array([0.9, 0.25], np.float32),
        np.array([1, 0]),
        category_ids=[3, 8],
    )
    assert entries == [
        {
            "image_id": 7,
            "category_id": 8,
            "bbox": [10.0, 20.0, 30.0, 40.0],
            "score": 0.8999999761581421,
        },
        {"image_id": 7, "category_id": 3, "bbox": [0.5, 1.5, 2.0, 2.5], "score": 0.25},
    ]
    json.dumps(entries)  # plain Python numbers


def _predictions(results: list[dict], category_ids: list[int], img_ids) -> list[dict]:
    """COCO result entries back to model predictions: tensors, xyxy, contiguous labels."""
    predictions = []
    for img_id in img_ids:
        mine = [r for r in results if r["image_id"] == img_id]
        boxes = torch.tensor([r["bbox"] for r in mine], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        predictions.append(
            {
                "boxes": boxes,
                "scores": torch.tensor([r["score"] for r in mine], dtype=torch.float32),
                "labels": torch.tensor([category_ids.index(r["category_id"]) for r in mine]),
                "meta": {"img_id": img_id, "img_path": f"{img_id:06d}.jpg"},
            }
        )
    return predictions


@pytest.mark.parametrize("with_meta", [True, False])
def test_metric_maps_labels_and_evaluates_predicted_images_only(tmp_path, with_meta):
    annotations = crafted_annotations()
    ann_file = write_json(tmp_path / "instances.json", annotations)
    results_file = tmp_path / "out" / "results.json"
    metric = CocoMetric(ann_file=ann_file, backend="pycocotools", results_file=str(results_file))
    # The dataset's label order need not be the sorted ids when it says so in its meta.
    category_ids = [11, 2, 13, 5] if with_meta else CATEGORY_IDS
    if with_meta:
        metric.dataset_meta = {"category_ids": category_ids, "classes": ("c", "a", "d", "b")}
    predicted_images = [1, 3, 4]  # image 4: no detections, its two objects count as missed
    predictions = _predictions(crafted_results(), category_ids, predicted_images)
    metric.process({}, predictions[:2])
    metric.process({}, predictions[2:])
    metrics = metric.evaluate(size=len(predicted_images))

    expected_results = [r for r in crafted_results() if r["image_id"] in predicted_images]
    expected = evaluate_bbox(annotations, expected_results, predicted_images, "pycocotools")
    assert list(metrics) == [f"coco/{name}" for name in COCO_BBOX_STAT_NAMES]
    np.testing.assert_allclose(list(metrics.values()), expected.stats, rtol=0, atol=1e-6)
    # Image 2 and 5 were not predicted: their objects are not counted. The large
    # object of image 1 is found first, so AP_l is 1 on this subset.
    assert metrics["coco/bbox_mAP_l"] == pytest.approx(1.0, abs=1e-12)

    written = json.loads(results_file.read_text())
    assert len(written) == len(expected_results)
    for got, want in zip(written, expected_results, strict=True):
        assert got["image_id"] == want["image_id"]
        assert got["category_id"] == want["category_id"]
        assert got["bbox"] == pytest.approx(want["bbox"], abs=1e-4)
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)


def test_metric_with_no_detections_anywhere(tmp_path):
    ann_file = write_json(tmp_path / "instances.json", crafted_annotations())
    metric = CocoMetric(ann_file=ann_file)
    metric.process({}, _predictions([], CATEGORY_IDS, [1, 2, 3, 4, 5]))
    metrics = metric.evaluate(size=5)
    assert list(metrics.values()) == [0.0] * 12


def test_missing_and_malformed_annotation_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        CocoMetric(ann_file=str(tmp_path / "nowhere.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(AnnotationError, match="broken.json.*not valid JSON"):
        load_coco_annotations(broken)
    no_categories = write_json(tmp_path / "nocat.json", {"images": [], "annotations": []})
    with pytest.raises(AnnotationError, match="nocat.json: top-level key 'categories' is missing"):
        load_coco_annotations(no_categories)

    def broken_annotation(**change):
        data = crafted_annotations()
        data["annotations"][6].update(change)  # annotation id 7
        for key in [k for k, v in change.items() if v is None]:
            del data["annotations"][6][key]
        return write_json(tmp_path / "bad.json", data)

    cases = [
        ("has area 'big'; expected a number >= 0", dict(area="big")),
        ("has area -1; expected a number >= 0", dict(area=-1)),
        ("refers to image_id 99, not in 'images'", dict(image_id=99)),
        ("has category_id 3, not in 'categories'", dict(category_id=3)),
        ("has bbox \\[1, 2, 3\\]; expected \\[x, y, width, height\\]", dict(bbox=[1, 2, 3])),
        ("has bbox \\[1, 2, -3, 4\\]; expected", dict(bbox=[1, 2, -3, 4])),
        ("has iscrowd 2; expected 0 or 1", dict(iscrowd=2)),
        ("has no 'bbox'", dict(bbox=None)),
    ]
    for problem, change in cases:
        with pytest.raises(AnnotationError, match=f"bad.json: annotation 7 {problem}"):
            load_coco_annotations(broken_annotation(**change))
        # The metric reads through the same reader, so it refuses the same files.
        with pytest.raises(AnnotationError, match=f"bad.json: annotation 7 {problem}"):
            CocoMetric(ann_file=str(tmp_path / "bad.json"))


def test_bad_predictions_name_the_image(tmp_path):
    ann_file = write_json(tmp_path / "instances.json", crafted_annotations())
    metric = CocoMetric(ann_file=ann_file)
    (prediction,) = _predictions(crafted_results(), CATEGORY_IDS, [1])
    with pytest.raises(AnnotationError, match="image id 42: not an image of .*instances.json"):
        metric.process({}, [dict(prediction, meta={"img_id": 42})])
    with pytest.raises(AnnotationError, match="image id 1: labels must be in 0..3"):
        metric.process({}, [dict(prediction, labels=prediction["labels"] + 2)])
    with pytest.raises(AnnotationError, match="image id 1: boxes or scores are not finite"):
        metric.process({}, [dict(prediction, scores=prediction["scores"] * float("nan"))])
    with pytest.raises(KeyError, match="meta\\['img_id'\\]"):
        metric.process({}, [dict(prediction, meta={"img_path": "x.jpg"})])
    metric.process({}, [prediction, prediction])
    with pytest.raises(AnnotationError, match="image id 1 was predicted twice"):
        metric.evaluate(size=2)
    with pytest.raises(AnnotationError, match="image_id 42 is not an image of the annotations"):
        evaluate_bbox(crafted_annotations(), [_result(42, 2, [0, 0, 1, 1], 0.5)])
    with pytest.raises(ValueError, match="backend must be"):
        CocoMetric(ann_file=ann_file, backend="detectron2")


# ------------------------------------------------ ids never trusted to a float64


def three_images(image_ids, category_id=1, ann_ids=(1, 2, 3)) -> tuple[dict, list[dict]]:
    """Three images with one cat each; two detections, each on a different image's cat spot
    (one hit). With ids that a float64 merges, images would pool their boxes."""
    gt = {
        "images": [
            {"id": i, "file_name": f"{k}.jpg", "width": 100, "height": 100}
            for k, i in enumerate(image_ids)
        ],
        "categories": [{"id": category_id, "name": "cat"}],
        "annotations": [
            {"id": a, "image_id": i, "category_id": category_id, "bbox": [10 + 20 * k, 10, 30, 30],
             "area": 900, "iscrowd": 0}
            for k, (a, i) in enumerate(zip(ann_ids, image_ids, strict=True))
        ],
    }  # fmt: skip
    results = [
        _result(image_ids[1], category_id, [30, 10, 30, 30], 0.9),  # its own cat: a hit
        _result(image_ids[0], category_id, [50, 10, 30, 30], 0.8),  # image 2's spot: a miss
    ]
    return gt, results


SMALL_IDS_AP = 0.33663366336633666  # 1 of 3 cats found first: 34 of 101 recall points


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
@pytest.mark.parametrize(
    "image_ids",
    [
        (1, 2, 3),
        (2**53, 2**53 + 1, 2**53 + 2),  # float64 holds 2**53 + 1 as 2**53
        (2**63 - 3, 2**63 - 2, 2**63 - 1),  # the top of int64
        (-5, 0, 2**60),  # negative, zero, any order of magnitude
    ],
)
def test_any_image_ids_give_the_small_id_numbers(backend, image_ids):
    gt, results = three_images(image_ids)
    stats = dict(zip(COCO_BBOX_STAT_NAMES, evaluate_bbox(gt, results, backend=backend).stats,
                     strict=True))  # fmt: skip
    assert stats["bbox_mAP"] == pytest.approx(SMALL_IDS_AP, abs=1e-12)
    assert stats["bbox_AR@100"] == pytest.approx(1 / 3, abs=1e-12)


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_huge_category_and_annotation_ids_and_annotation_id_zero(backend):
    reference = evaluate_bbox(*three_images((1, 2, 3)), backend=backend).stats
    # Category ids that merge in a float64, with a second (empty) category next to them.
    gt, results = three_images((1, 2, 3), category_id=2**53 + 1)
    gt["categories"].append({"id": 2**53, "name": "dog"})
    stats = evaluate_bbox(gt, results, backend=backend, cat_ids=[2**53 + 1]).stats
    np.testing.assert_allclose(stats, reference, rtol=0, atol=1e-12)
    # Annotation ids beyond 2**53, and 0: pycocotools marks a match by the ground
    # truth's id, so an id 0 would count as "not matched".
    for ann_ids in ((2**53, 2**53 + 1, 2**53 + 2), (0, 1, 2)):
        gt, results = three_images((1, 2, 3), ann_ids=ann_ids)
        stats = evaluate_bbox(gt, results, backend=backend).stats
        np.testing.assert_allclose(stats, reference, rtol=0, atol=1e-12)


def test_metric_writes_and_reports_the_users_huge_ids(tmp_path):
    image_ids = (2**53, 2**53 + 1, 2**53 + 2)
    gt, results = three_images(image_ids, category_id=2**62)
    ann_file = write_json(tmp_path / "gt.json", gt)
    out = tmp_path / "results.json"
    metric = CocoMetric(ann_file=ann_file, results_file=str(out))
    metric.process({}, _predictions(results, [2**62], image_ids))
    metrics = metric.evaluate(size=3)
    assert metrics["coco/bbox_mAP"] == pytest.approx(SMALL_IDS_AP, abs=1e-12)
    written = json.loads(out.read_text())
    assert sorted(r["image_id"] for r in written) == [2**53, 2**53 + 1]
    assert {r["category_id"] for r in written} == {2**62}


# ----------------------------------------------------- the dataset's class selection


def cat_and_dog() -> dict:
    """Two images, each with a cat and a dog (the README's class-subset case)."""
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            _annotation(1, 1, 1, [10, 10, 30, 30]),
            _annotation(2, 1, 2, [50, 50, 30, 30]),
            _annotation(3, 2, 1, [20, 20, 40, 40]),
            _annotation(4, 2, 2, [5, 60, 30, 30]),
        ],
    }


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_metric_evaluates_only_the_datasets_classes(tmp_path, backend, logged_messages):
    from mtvision.data import CocoDetection

    ann_file = write_json(tmp_path / "instances.json", cat_and_dog())
    dataset = CocoDetection(
        tmp_path, ann_file="instances.json", data_prefix=dict(img=""), classes=("cat",),
        test_mode=True,
    )  # fmt: skip
    metric = CocoMetric(ann_file=ann_file, backend=backend, classwise=True)
    metric.dataset_meta = dataset.metainfo
    predictions = []
    for index in range(len(dataset)):  # every cat found exactly
        info = dataset.get_data_info(index)
        boxes = torch.as_tensor(info["boxes"])
        predictions.append(
            {"boxes": boxes, "scores": torch.full((len(boxes),), 0.9),
             "labels": torch.as_tensor(info["labels"]), "meta": info["meta"]}
        )  # fmt: skip
    metric.process({}, predictions)
    metrics = metric.evaluate(size=len(dataset))
    assert metrics["coco/bbox_mAP"] == pytest.approx(1.0, abs=1e-12)
    (table,) = [m for m in logged_messages if m.startswith("Per-category bbox AP")]
    assert [line.split()[0] for line in table.splitlines()[2:]] == ["cat"]


def test_metric_selects_by_class_names_without_category_ids(tmp_path):
    """A dataset that only says ``classes`` (mmdet's rule: the ids of those names)."""
    annotations = cat_and_dog()
    metric = CocoMetric(ann_file=write_json(tmp_path / "instances.json", annotations))
    metric.dataset_meta = {"classes": ("dog",)}
    assert metric.category_ids == [2]
    dogs = [a for a in annotations["annotations"] if a["category_id"] == 2]
    metric.process({}, _predictions(
        [_result(a["image_id"], 2, a["bbox"], 0.5) for a in dogs], [2], [1, 2]
    ))  # fmt: skip
    assert metric.evaluate(size=2)["coco/bbox_mAP"] == pytest.approx(1.0, abs=1e-12)


def test_model_classes_the_file_lacks_are_left_out(tmp_path):
    """A dataset built with ``model_classes`` gives ``None`` ids for classes the json lacks:
    their predictions are not scored, the others are, under the file's ids."""
    annotations = cat_and_dog()
    metric = CocoMetric(ann_file=write_json(tmp_path / "instances.json", annotations))
    metric.dataset_meta = {"classes": ("dog", "yak", "cat"), "category_ids": (2, None, 1)}
    predictions = []
    for image_id in (1, 2):
        mine = [a for a in annotations["annotations"] if a["image_id"] == image_id]
        boxes = torch.tensor([a["bbox"] for a in mine], dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        labels = [0 if a["category_id"] == 2 else 2 for a in mine]
        predictions.append(
            {"boxes": torch.cat([boxes, boxes[:1]]), "scores": torch.tensor([0.9, 0.9, 0.95]),
             "labels": torch.tensor([*labels, 1]), "meta": {"img_id": image_id}}
        )  # fmt: skip
    metric.process({}, predictions)
    assert metric.evaluate(size=2)["coco/bbox_mAP"] == pytest.approx(1.0, abs=1e-12)
