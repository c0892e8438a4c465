"""The task adapters: result dicts, files, agreement, and deployed outputs read back into the
predictions the heads give."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtvision.backbones import MobileNetV2
from mtvision.heads import ClassifierHead, DeepLabV3Head, SSDLiteHead
from mtvision.tasks import (
    CLASSIFICATION,
    DETECTION,
    SEGMENTATION,
    HeadInfo,
    Task,
    heads_of_task,
    predicted_heads,
    task_named,
    task_of,
)
from mtvision.utils.palette import voc_colormap
from mtvision.utils.topk import scores_from_top_k, top_k


def test_top_k_and_score_vector_are_inverse_on_the_top_k():
    scores = np.array([0.1, 0.4, 0.05, 0.4, 0.05])
    assert top_k(scores, 3).tolist() == [1, 3, 0]  # ties keep label order
    assert top_k(scores, 9).tolist() == [1, 3, 0, 2, 4]
    labels = torch.tensor([[1, 3, 0]])
    vector = scores_from_top_k(labels, torch.tensor([[0.4, 0.4, 0.1]]), 5)
    assert vector[0].tolist() == pytest.approx([0.1, 0.4, 0.0, 0.4, 0.0])
    assert top_k(vector[0].numpy(), 3).tolist() == [1, 3, 0]


def test_classification_result_names_the_top_k():
    head = HeadInfo("kind", CLASSIFICATION, ("a", "b", "c", "d"))
    prediction = {"pred_score": torch.tensor([0.1, 0.6, 0.05, 0.25]), "pred_label": 1}
    result = CLASSIFICATION.result(prediction, head, topk=3)
    assert result == {
        "labels": [1, 3, 0],
        "label_names": ["b", "d", "a"],
        "scores": [pytest.approx(0.6), pytest.approx(0.25), pytest.approx(0.1)],
    }
    # A deployed graph's top-2 only: no more than it knows, whatever topk asks.
    limited = HeadInfo("kind", CLASSIFICATION, None, max_topk=2)
    assert CLASSIFICATION.result(prediction, limited, topk=3)["label_names"] == ["1", "3"]


def test_detection_result_keeps_and_sorts_by_score():
    head = HeadInfo("pets", DETECTION, ("cat", "dog"))
    prediction = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]]),
        "scores": torch.tensor([0.4, 0.9, 0.1]),
        "labels": torch.tensor([1, 0, 1]),
    }
    result = DETECTION.result(prediction, head, score_threshold=0.3)
    assert result == {
        "boxes": [[5.0, 5.0, 20.0, 30.0], [0.0, 0.0, 10.0, 10.0]],
        "scores": [pytest.approx(0.9), pytest.approx(0.4)],
        "labels": [0, 1],
        "label_names": ["cat", "dog"],
    }


def test_segmentation_result_and_its_palette_png():
    mask = torch.zeros(4, 6, dtype=torch.int64)
    mask[1:3, 2:5] = 2
    head = HeadInfo.from_metainfo("seg", SEGMENTATION, {"classes": ("bg", "x", "y")})
    assert np.array_equal(head.palette, voc_colormap())
    result = SEGMENTATION.result({"pred_mask": mask}, head)
    assert result["labels"] == [0, 2] and result["label_names"] == ["bg", "y"]
    assert result["areas"] == [18, 6] and result["mask"].dtype == np.uint8
    fields, files = SEGMENTATION.result_files(result, head)
    png = Image.open(io.BytesIO(files["mask"]))
    assert png.mode == "P" and np.array_equal(np.asarray(png), mask.numpy())
    with pytest.raises(ValueError, match="head 'seg': class map values 0..300"):
        SEGMENTATION.result({"pred_mask": torch.tensor([[0, 300]])}, head)


def test_agreement_of_two_runs():
    expected = {"labels": torch.tensor([[1, 2], [0, 1]]), "scores": torch.tensor([[0.6, 0.3]] * 2)}
    actual = {"labels": torch.tensor([[1, 0], [1, 0]]), "scores": torch.tensor([[0.6, 0.2]] * 2)}
    assert CLASSIFICATION.agreement(expected, actual) == 0.5
    assert CLASSIFICATION.max_score_difference(expected, actual) == pytest.approx(0.1)
    assert DETECTION.max_score_difference({}, {}) is None

    boxes = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 0, 0]]])  # 1 padding
    want = {
        "boxes": boxes,
        "scores": torch.tensor([[0.9, 0.8, 0.0]]),
        "labels": torch.tensor([[0, 1, -1]]),
        "num_detections": torch.tensor([2]),
    }
    shift = torch.tensor([[0.0, 0, 0, 0], [3, 0, 3, 0], [0, 0, 0, 0]])
    moved = {**want, "boxes": boxes + shift}
    assert DETECTION.agreement(want, want) == 1.0
    assert DETECTION.agreement(want, moved) == 0.5  # the second box moved 3 px

    mask = torch.zeros(1, 4, 5, dtype=torch.uint8)
    other = mask.clone()
    other[0, 0, :2] = 1
    assert SEGMENTATION.agreement({"mask": mask}, {"mask": other}) == pytest.approx(18 / 20)


def _features(size=(64, 96)):
    torch.manual_seed(0)
    taps = ("layer15_expansion", "stage7", "final_conv")
    backbone = MobileNetV2(width_mult=0.25, output_stride=16, out_features=taps).eval()
    return backbone.feature_info, backbone(torch.randn(2, 3, *size))


def test_deployed_outputs_read_back_into_the_heads_predictions():
    feature_info, features = _features()
    input_size = (64, 96)
    samples = [
        {"meta": {"img_shape": input_size, "ori_shape": (128, 192)}, "label": 2},
        {"meta": {"img_shape": input_size, "ori_shape": (32, 48)}},
    ]
    torch.manual_seed(1)
    classifier = ClassifierHead(feature_info, num_classes=5).eval()
    detector = SSDLiteHead(feature_info, num_classes=3, extra_depths=(32, 32, 16, 16)).eval()
    segmenter = DeepLabV3Head(feature_info, num_classes=4, channels=16).eval()
    with torch.no_grad():
        for head in (classifier, detector, segmenter):
            outputs = head(features)
            predictions = head.predict(outputs, samples, input_size)
            task = task_of(head)
            deployed = head.deploy(outputs, input_size, **task.deploy_options(5, True))
            info = {"num_classes": head.num_classes, **task.deploy_metadata(head, 5)}
            read_back = task.from_deployed(deployed, samples, info)
            assert task.agreement(deployed, deployed) == 1.0
            for want, got in zip(predictions, read_back, strict=True):
                assert set(got) == set(want)
                for field, value in want.items():
                    torch.testing.assert_close(torch.as_tensor(got[field]), torch.as_tensor(value))
    # Without the logits the class map is resized: the sizes are the original images'.
    with torch.no_grad():
        deployed = segmenter.deploy(segmenter(features), input_size)
    masks = SEGMENTATION.from_deployed(deployed, samples, {"num_classes": 4})
    assert [tuple(m["pred_mask"].shape) for m in masks] == [(128, 192), (32, 48)]


def test_tasks_are_found_by_name_and_by_head_and_not_by_string():
    assert task_named("detection") is DETECTION
    with pytest.raises(ValueError, match="no task adapter named 'depth'"):
        task_named("depth")
    feature_info, _ = _features()
    assert task_of(ClassifierHead(feature_info, num_classes=2)) is CLASSIFICATION

    class StringTask(torch.nn.Module):
        task = "detection"

    with pytest.raises(ValueError, match="head 'old' \\(StringTask\\) declares no task adapter"):
        task_of(StringTask(), "old")
    prediction = {"boxes": [], "scores": [], "labels": [], "pred_mask": []}
    assert predicted_heads(prediction) == {"detection": DETECTION, "segmentation": SEGMENTATION}
    assert predicted_heads(prediction, {"pets": DETECTION, "kind": CLASSIFICATION}) == {
        "pets": DETECTION
    }
    # Class names are looked up by head name in a joined dataset's metainfo.
    metainfo = {"tasks": {"pets": {"classes": ["cat", "dog"]}}}
    assert HeadInfo.from_metainfo("pets", DETECTION, metainfo).classes == ("cat", "dog")
    assert HeadInfo.from_metainfo("detection", DETECTION, metainfo).classes is None


def test_one_image_as_deployed_outputs_summarised_and_compared():
    scores = torch.tensor([0.1, 0.5, 0.05, 0.3, 0.05])
    top = CLASSIFICATION.to_deployed({"pred_score": scores}, topk=3)
    assert top["labels"].tolist() == [[1, 3, 0]] and top["scores"].shape == (1, 3)
    assert CLASSIFICATION.to_deployed({"pred_score": scores}, topk=9)["labels"].shape == (1, 5)
    assert CLASSIFICATION.summary(top) == "top-3, top-1 1"
    other = {"labels": torch.tensor([[3, 1, 4]]), "scores": torch.tensor([[0.5, 0.25, 0.1]])}
    assert CLASSIFICATION.comparison(top, other) == (
        "top-1 DIFFERENT, top-3 overlap 2/3, max |score diff| 0.05"
    )
    assert CLASSIFICATION.comparison(top, top).startswith("top-1 same, top-3 overlap 3/3")

    prediction = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 30]]),
        "scores": torch.tensor([0.9, 0.6]),
        "labels": torch.tensor([1, 0]),
    }
    boxes = DETECTION.to_deployed(prediction)
    assert boxes["boxes"].shape == (1, 2, 4) and boxes["num_detections"].tolist() == [2]
    assert DETECTION.summary(boxes) == "2 boxes"
    # Padded like a deployed graph: the padding is not compared; the second box moved
    # by half its width (IoU 1/3), a third of a different class matches nothing.
    padded = {
        "boxes": torch.tensor([[[0.0, 0, 10, 10], [30, 20, 50, 30], [0, 0, 10, 10], [0] * 4]]),
        "scores": torch.tensor([[0.9, 0.6, 0.5, 0.0]]),
        "labels": torch.tensor([[1, 0, 0, 0]]),
        "num_detections": torch.tensor([3]),
    }
    assert DETECTION.comparison(boxes, padded) == (
        "2 vs 3 boxes, best same-class IoU min 0.333 median 0.333"
    )
    empty = DETECTION.to_deployed({key: value[:0] for key, value in prediction.items()})
    assert DETECTION.comparison(boxes, empty) == "2 vs 0 boxes"

    mask = torch.tensor([[0, 0, 2], [2, 2, 7]])
    deployed = SEGMENTATION.to_deployed({"pred_mask": mask})
    assert deployed["mask"].shape == (1, 2, 3)
    assert SEGMENTATION.summary(deployed) == "mask 2x3, 3 classes"
    changed = {"mask": torch.tensor([[[0, 0, 2], [2, 1, 1]]], dtype=torch.uint8)}
    assert SEGMENTATION.comparison(deployed, changed) == "66.67 % of pixels the same class"


def test_a_new_task_gets_a_summary_and_comparison_from_its_agreement():
    class Depth(Task):
        name = "depth_for_test"

        def agreement(self, expected, actual):
            return float((expected["depth"] - actual["depth"]).abs().le(0.5).double().mean())

    outputs = {"depth": torch.zeros(1, 4, 6)}
    assert Depth().summary(outputs) == "depth 4x6"
    moved = {"depth": torch.tensor([[[0.0] * 6] * 3 + [[1.0] * 6]])}
    assert Depth().comparison(outputs, moved) == "agreement 0.75"


def test_heads_are_found_by_their_task_whatever_their_names():
    tasks = {"pets": DETECTION, "kind": CLASSIFICATION, "shapes": DETECTION}
    assert heads_of_task(tasks, DETECTION) == ["pets", "shapes"]
    assert heads_of_task(tasks, SEGMENTATION) == []


def test_phone_outputs_finish_into_the_onnx_graphs_fields():
    """The phone graph (probabilities, raw SSD outputs, per-pixel class scores) finished
    by each task as the torch head does: the same top-k, padded detections and class map
    as the ONNX graph's ``deploy``, from the metadata alone (anchors recorded)."""
    input_size = (96, 128)
    feature_info, features = _features(input_size)
    torch.manual_seed(3)
    classifier = ClassifierHead(feature_info, num_classes=5).eval()
    detector = SSDLiteHead(
        feature_info,
        num_classes=3,
        extra_depths=(32, 32, 16, 16),
        test_cfg={"score_threshold": 0.01},
    ).eval()
    segmenter = DeepLabV3Head(feature_info, num_classes=4, channels=16).eval()
    with torch.no_grad():
        for head in (classifier, detector, segmenter):
            for module in head.modules():  # scores far from ties (the last layers start at 0)
                if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                    torch.nn.init.normal_(module.weight, std=0.3)
            task = task_of(head)
            outputs = head(features)
            final = head.deploy(outputs, input_size, **task.deploy_options(3, False))
            for class_map in (False, True):
                phone = head.deploy(
                    outputs, input_size, **task.deploy_options(3, False, True, class_map)
                )
                assert set(phone).isdisjoint(final) or task is SEGMENTATION and class_map
                info = {
                    "num_classes": head.num_classes,
                    **task.deploy_metadata(head, 3, True, input_size),
                }
                info = json.loads(json.dumps(info))  # as a file's metadata holds it
                finished = task.finish_phone_outputs(phone, info, input_size)
                assert set(finished) == set(final)
                for field, value in final.items():
                    torch.testing.assert_close(finished[field], value, rtol=1e-5, atol=1e-5)
    assert int(final["mask"].max()) > 0
    detections = detector.deploy(detector(features), input_size)
    assert int(detections["num_detections"].min()) > 0
