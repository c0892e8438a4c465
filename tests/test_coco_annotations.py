"""One reading of COCO ground truth for every consumer: the dataset, the metric and both
COCOeval backends agree on files with missing optional keys, extra keys and odd values."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mtvision.data import CocoDetection
from mtvision.data.coco_annotations import load_coco_instances, normalize_coco_instances
from mtvision.errors import AnnotationError
from mtvision.evaluation.coco_metric import CocoMetric, evaluate_bbox, load_coco_results

BACKENDS = ["faster_coco_eval", "pycocotools"]


def write_json(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def no_iscrowd_pair() -> tuple[dict, list[dict]]:
    """Two images with one cat each, no 'iscrowd' anywhere; only the first cat is found."""
    gt = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [20, 20, 50, 50], "area": 2500},
        ],
    }
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9}]
    return gt, results


# Recall reaches 1/2 at precision 1: 51 of COCO's 101 recall points -> AP 51/101.
NO_ISCROWD_AP = 0.504950495049505


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_iscrowd_means_zero_for_both_backends(tmp_path, backend):
    gt, results = no_iscrowd_pair()
    ann_file = write_json(tmp_path / "gt.json", gt)
    res_file = write_json(tmp_path / "res.json", results)
    metric = CocoMetric(ann_file=ann_file, backend=backend, classwise=False)
    stats = metric.evaluate_results(load_coco_results(res_file))
    # pycocotools sums in another order: 2e-16 below faster-coco-eval's value.
    assert stats["bbox_mAP"] == pytest.approx(NO_ISCROWD_AP, abs=1e-12)
    assert stats["bbox_AR@100"] == pytest.approx(0.5, abs=1e-12)


def _stats_of(gt: dict, results: list[dict], backend: str) -> np.ndarray:
    return evaluate_bbox(gt, results, backend=backend).stats


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_area_is_the_box_area_and_extra_keys_change_nothing(backend):
    gt, results = no_iscrowd_pair()
    reference = _stats_of(gt, results, backend)
    without_area = json.loads(json.dumps(gt))
    for ann in without_area["annotations"]:
        del ann["area"]
    np.testing.assert_array_equal(_stats_of(without_area, results, backend), reference)
    # A flag one backend could read and the other ignores, and keys nobody reads.
    extra = json.loads(json.dumps(gt))
    extra["annotations"][1].update(ignore=1, attributes={"occluded": True}, segmentation=[])
    extra["images"][0].update(coco_url="http://x", license=3)
    extra["info"], extra["licenses"] = {"year": 2024}, []
    np.testing.assert_array_equal(_stats_of(extra, results, backend), reference)
    # iscrowd written as JSON booleans by some tools.
    booleans = json.loads(json.dumps(gt))
    for ann in booleans["annotations"]:
        ann["iscrowd"] = False
    np.testing.assert_array_equal(_stats_of(booleans, results, backend), reference)


def test_missing_area_comes_from_the_mask_when_there_is_one():
    block = np.zeros((20, 30), np.uint8)
    block[3:8, 4:10] = 1
    rle = mask_utils.encode(np.asfortranarray(block))
    rle["counts"] = rle["counts"].decode("ascii")  # as stored in json
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 30, "height": 20}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            # A triangle inside its 10 x 10 box: half the box, as pycocotools rasterises it.
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10],
             "segmentation": [[2, 2, 12, 2, 2, 12]]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [4, 3, 6, 5],
             "segmentation": rle, "iscrowd": True},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 3, 4]},
        ],
    }  # fmt: skip
    annotations = normalize_coco_instances(gt, "gt.json")["annotations"]
    assert [a["area"] for a in annotations] == [45.0, 30.0, 12.0]
    assert [a["iscrowd"] for a in annotations] == [0, 1, 0]
    # Normalising twice changes nothing, and the input is left as it was.
    assert normalize_coco_instances({**gt, "annotations": annotations}, "x")["annotations"] == (
        annotations
    )
    assert "area" not in gt["annotations"][0]


def test_segmentation_that_cannot_give_an_area_is_named(tmp_path):
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 9, "image_id": 1, "category_id": 1, "bbox": [0, 0, 3, 4], "segmentation": 7}
        ],
    }
    path = write_json(tmp_path / "gt.json", gt)
    with pytest.raises(AnnotationError, match=r"gt.json: annotation 9 has no 'area' and its"):
        load_coco_instances(path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (dict(width=0), "image 1 .* has width 0; expected a positive number"),
        (dict(height="64"), "image 1 .* has height '64'; expected a positive number"),
        (dict(file_name=""), "image 1 has file_name ''"),
    ],
)
def test_bad_image_entries_are_named(tmp_path, change, problem):
    gt, _ = no_iscrowd_pair()
    gt["images"][0].update(change)
    path = write_json(tmp_path / "gt.json", gt)
    with pytest.raises(AnnotationError, match=f"gt.json: {problem}"):
        load_coco_instances(path)


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text("")
    with pytest.raises(AnnotationError, match=r"gt.json: COCO annotation file is not valid JSON "
                       r"\(the file is empty\)"):  # fmt: skip
        load_coco_instances(path)


# ------------------------------------------------------- the dataset reads the same


def _write_images(folder, sizes: dict[str, tuple[int, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in sizes.items():
        assert cv2.imwrite(str(folder / name), np.full((height, width, 3), 80, np.uint8))


def test_dataset_reads_files_without_optional_keys(tmp_path):
    """No iscrowd, no area, no width/height, crowd as a boolean: what the metric accepts."""
    _write_images(tmp_path / "images", {"a.jpg": (60, 40), "b.jpg": (30, 20)})
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "categories": [{"id": 4, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [50, 30, 20, 20]},
            {"id": 2, "image_id": 2, "category_id": 4, "bbox": [1, 1, 5, 5], "iscrowd": True},
        ],
    }
    ann_file = write_json(tmp_path / "gt.json", gt)
    dataset = CocoDetection(tmp_path, ann_file="gt.json", data_prefix=dict(img="images"))
    first, second = dataset.get_data_info(0), dataset.get_data_info(1)
    # No width/height in the json: the file's header gives them, and the box is clipped.
    assert (first["width"], first["height"]) == (60, 40)
    np.testing.assert_array_equal(first["boxes"], [[50, 30, 60, 40]])
    assert second["boxes"].shape == (0, 4)  # the crowd region is no target
    CocoMetric(ann_file=ann_file)  # and the metric takes the same file


def test_two_images_with_one_file_name_are_an_error(tmp_path):
    gt = {
        "images": [
            {"id": 5, "file_name": "a.jpg", "width": 9, "height": 9},
            {"id": 8, "file_name": "a.jpg", "width": 9, "height": 9},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [],
    }
    write_json(tmp_path / "gt.json", gt)
    with pytest.raises(AnnotationError, match=r"gt.json: images 5 and 8 both have file_name"):
        CocoDetection(tmp_path, ann_file="gt.json")


def test_category_without_name(tmp_path):
    gt, results = no_iscrowd_pair()
    del gt["categories"][0]["name"]
    ann_file = write_json(tmp_path / "gt.json", gt)
    # The metric needs no name (its table shows the id)...
    assert CocoMetric(ann_file=ann_file).category_names == {1: "1"}
    # ... a dataset names its classes.
    with pytest.raises(AnnotationError, match=r"gt.json: categories \[1\] have no 'name'"):
        CocoDetection(tmp_path, ann_file="gt.json")


def duplicate_pair() -> tuple[dict, dict, list[dict]]:
    """gt (1 image, 2 cats), gt_dup (annotation 1 copied as id 3, as a CVAT export wrote
    it) and one exact detection per real object."""
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600},
        ],
    }
    gt_dup = dict(gt, annotations=[*gt["annotations"], dict(gt["annotations"][0], id=3)])
    results = [
        {"image_id": 1, "category_id": 1, "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
    ]
    return gt, gt_dup, results


def test_exact_duplicate_annotations_are_dropped_with_one_warning(tmp_path, logged_warnings):
    _, gt_dup, _ = duplicate_pair()
    # Not duplicates: another box, another category, a crowd region on the same box.
    gt_dup["categories"].append({"id": 2, "name": "dog"})
    gt_dup["annotations"] += [
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 31]},
        {"id": 5, "image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30]},
        {"id": 6, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "iscrowd": 1},
        {"id": 7, "image_id": 1, "category_id": 1, "bbox": [50.0, 50.0, 40.0, 40.0]},
    ]
    path = write_json(tmp_path / "gt_dup.json", gt_dup)
    loaded = load_coco_instances(path)
    assert [a["id"] for a in loaded["annotations"]] == [1, 2, 4, 5, 6]
    assert logged_warnings == [
        f"{path}: dropped 2 duplicate annotations (an exact copy of an earlier one: same "
        "image, category and bbox, another id): ids 3 (copy of 1), 7 (copy of 2)"
    ]
    assert normalize_coco_instances(loaded, path) == loaded  # idempotent, and silent
    assert len(logged_warnings) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_ground_truth_does_not_lower_the_metric(tmp_path, backend, logged_warnings):
    gt, gt_dup, results = duplicate_pair()
    res_file = write_json(tmp_path / "res.json", results)
    for name, data in (("gt.json", gt), ("gt_dup.json", gt_dup)):
        metric = CocoMetric(write_json(tmp_path / name, data), backend=backend, classwise=False)
        stats = metric.evaluate_results(load_coco_results(res_file))
        # Kept, the copy was a third object no detection matches: mAP 0.663, AR 0.667.
        assert stats["bbox_mAP"] == pytest.approx(1.0, abs=1e-12)
        assert stats["bbox_AR@100"] == pytest.approx(1.0, abs=1e-12)
    assert [w.split(": ", 1)[0] for w in logged_warnings] == [str(tmp_path / "gt_dup.json")]


def test_duplicate_annotation_is_one_training_target(tmp_path, logged_warnings):
    _, gt_dup, _ = duplicate_pair()
    _write_images(tmp_path, {"a.jpg": (100, 100)})
    write_json(tmp_path / "gt_dup.json", gt_dup)
    dataset = CocoDetection(tmp_path, ann_file="gt_dup.json", data_prefix=dict(img=""))
    np.testing.assert_array_equal(
        dataset.get_data_info(0)["boxes"], [[10, 10, 40, 40], [50, 50, 90, 90]]
    )
    assert logged_warnings == [
        f"{tmp_path / 'gt_dup.json'}: dropped 1 duplicate annotation (an exact copy of an "
        "earlier one: same image, category and bbox, another id): id 3 (copy of 1)"
    ]
