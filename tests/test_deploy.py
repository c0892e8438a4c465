"""The deployed ONNX graph: uint8 in, final results out, equal to the torch model's predict."""

import json

import numpy as np
import onnx
import pytest
import torch
from engine_toy import load_tool
from torch import nn

import mtvision
from mtvision.errors import ExportError
from mtvision.export import (
    DeployModel,
    OnnxRuntimeModel,
    export_deploy_onnx,
    export_onnx,
    read_deploy_metadata,
)
from mtvision.export.parity import detection_agreement, head_agreement
from mtvision.ops import class_aware_nms
from mtvision.utils.parity import randomize_batch_norms_

export_tool = load_tool("export")


def _images(n, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=generator)


def _detector(seed=1, **test_cfg):
    torch.manual_seed(seed)
    model = mtvision.create_model(
        "ssdlite320_mobilenet_v2",
        num_classes=4,
        width_mult=0.35,
        test_cfg=dict(score_threshold=0.3, **test_cfg),
    )
    return randomize_batch_norms_(model, seed=seed, input_size=96)


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    model = _detector()
    path = tmp_path_factory.mktemp("det") / "det.onnx"
    export_deploy_onnx(model, path, (96, 128), classes={"detection": ["a", "b", "c", "d"]})
    return model, path


class _NMSOnly(nn.Module):
    def forward(self, boxes, scores):
        return class_aware_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.1)


def test_class_aware_nms_in_torch_and_onnxruntime(tmp_path):
    # Boxes 0 and 1 overlap (IoU 0.81); box 2 is apart. Class 0 scores 0 > 1 > 2;
    # class 1 scores only box 1. Class-aware: box 1 survives in class 1 but not class 0.
    boxes = torch.tensor([[[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30.0]]])
    scores = torch.tensor([[[0.9, 0.8, 0.7], [0.0, 0.6, 0.05]]])
    expected = [[0, 0, 0], [0, 0, 2], [0, 1, 1]]
    eager = class_aware_nms(boxes, scores, 0.5, 0.1)
    assert sorted(eager.tolist()) == expected
    assert eager.tolist()[0] == [0, 0, 0]  # highest score first
    path = tmp_path / "nms.onnx"
    torch.onnx.export(
        _NMSOnly(), (boxes, scores), path, dynamo=False, opset_version=17,
        input_names=["boxes", "scores"], output_names=["selected"],
    )  # fmt: skip
    graph = onnx.load(path)
    assert [node.op_type for node in graph.graph.node if node.op_type == "NonMaxSuppression"]
    session = mtvision.export.onnx_session(path)
    (selected,) = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})
    assert sorted(selected.tolist()) == expected


def test_detector_graph_holds_nms_and_matches_torch(detector_file):
    model, path = detector_file
    graph = onnx.load(path)
    op_types = {node.op_type for node in graph.graph.node}
    assert "NonMaxSuppression" in op_types and "TopK" in op_types
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    images = _images(3, (96, 128))
    deployed = OnnxRuntimeModel(path)
    expected = DeployModel(model).eval().outputs(images)["detection"]
    actual = deployed.run(images)["detection"]
    assert set(actual) == {"boxes", "scores", "labels", "num_detections"}
    assert actual["boxes"].shape == (3, 100, 4) and actual["labels"].dtype == torch.int64
    assert expected["num_detections"].min() > 5, "too few detections to compare"
    assert torch.equal(actual["num_detections"], expected["num_detections"])
    assert detection_agreement(expected, actual) == 1.0
    assert detection_agreement(actual, expected) == 1.0
    # Padding past num_detections, as SSDLiteHead.postprocess gives it.
    count = int(actual["num_detections"][0])
    if count < 100:
        assert (actual["labels"][0, count:] == -1).all() and (
            actual["scores"][0, count:] == 0
        ).all()
    # Each image of a batch is detected as it is alone.
    single = deployed.run(images[1:2])["detection"]
    assert detection_agreement(single, {k: v[1:2] for k, v in actual.items()}) == 1.0


def test_detector_metadata_says_input_size_normalisation_and_classes(detector_file):
    model, path = detector_file
    metadata = read_deploy_metadata(path)
    assert metadata["input_size"] == [96, 128]
    assert metadata["input_name"] == "images"
    assert metadata["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert metadata["std"] == pytest.approx([58.395, 57.12, 57.375])
    assert metadata["heads"] == {
        "detection": {
            "task": "detection",
            "num_classes": 4,
            "classes": ["a", "b", "c", "d"],
            "outputs": {
                "boxes": "boxes",
                "scores": "scores",
                "labels": "labels",
                "num_detections": "num_detections",
            },
        }
    }
    # The same JSON is readable by any ONNX tool.
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["mtvision"]) == metadata


def test_deployed_predict_maps_boxes_to_the_original_image_like_torch(detector_file):
    model, path = detector_file
    images = _images(2, (96, 128), seed=3)
    samples = [
        {"meta": {"img_shape": (96, 128), "ori_shape": (480, 320)}},
        {"meta": {"img_shape": (96, 128), "ori_shape": (96, 256)}},
    ]
    deployed = OnnxRuntimeModel(path).predict(list(images), samples)
    with torch.no_grad():
        batch = model.data_preprocessor({"inputs": list(images), "data_samples": samples})
        expected = model.predict(batch["inputs"], samples)
    for got, want in zip(deployed, expected, strict=True):
        assert got["meta"] == want["meta"]
        assert got["boxes"].shape == want["boxes"].shape
        # Boxes scaled per axis to the original size (x by 320/128, y by 480/96) on both
        # sides; compared as sets, as NMS may order equal scores differently.
        assert detection_agreement(_padded(want), _padded(got)) == 1.0
    assert float(deployed[0]["boxes"][:, 3].max()) > 96  # really in original pixels


def _padded(prediction: dict) -> dict:
    """One image's predict() detections in SSDLiteHead.postprocess's batch layout."""
    return {
        "boxes": prediction["boxes"][None],
        "scores": prediction["scores"][None],
        "labels": prediction["labels"][None],
        "num_detections": torch.tensor([len(prediction["scores"])]),
    }


def test_classifier_graph_returns_topk(tmp_path):
    torch.manual_seed(0)
    model = randomize_batch_norms_(
        mtvision.create_model("mobilenet_v2_035", num_classes=10),
        seed=2,
        input_size=64,
    )
    path = export_deploy_onnx(model, tmp_path / "cls.onnx", (64, 64), topk=3)
    images = _images(4, (64, 64))
    actual = OnnxRuntimeModel(path).run(images)["classification"]
    expected = DeployModel(model, topk=3).eval().outputs(images)["classification"]
    assert actual["scores"].shape == (4, 3) and actual["labels"].shape == (4, 3)
    assert torch.equal(actual["labels"], expected["labels"])
    assert torch.allclose(actual["scores"], expected["scores"], atol=1e-5)
    assert (actual["scores"][:, :-1] >= actual["scores"][:, 1:]).all()
    # The same softmax as the model's own predict.
    with torch.no_grad():
        batch = model.data_preprocessor({"inputs": list(images), "data_samples": None})
        predictions = model.predict(batch["inputs"])
    top = torch.stack([p["pred_score"] for p in predictions]).topk(3, dim=1)
    assert torch.equal(top.indices, actual["labels"])


def test_segmenter_graph_takes_any_size_with_optional_logits(tmp_path):
    torch.manual_seed(0)
    model = randomize_batch_norms_(
        mtvision.create_model("deeplabv3_mobilenet_v2", num_classes=5, width_mult=0.35),
        seed=3,
        input_size=64,
    )
    path = export_deploy_onnx(model, tmp_path / "seg.onnx", None, seg_logits=True)
    deployed = OnnxRuntimeModel(path)
    assert deployed.input_size is None
    for size in [(64, 80), (97, 51)]:
        images = _images(2, size)
        actual = deployed.run(images)["segmentation"]
        expected = DeployModel(model, seg_logits=True).eval().outputs(images)["segmentation"]
        assert actual["mask"].shape == (2, *size) and actual["mask"].dtype == torch.uint8
        assert actual["seg_logits"].shape == (2, 5, *size)
        assert head_agreement("segmentation", expected, actual) >= 0.999
        assert torch.allclose(actual["seg_logits"], expected["seg_logits"], atol=1e-3)
        assert len(actual["mask"].unique()) > 1


def test_multitask_graph_names_outputs_by_head(tmp_path):
    torch.manual_seed(0)
    model = mtvision.create_model(
        "mobilenet_v2_multitask",
        num_classes=dict(classification=5, detection=3, segmentation=4),
        width_mult=0.35,
    )
    model = randomize_batch_norms_(model, seed=5, input_size=96)
    path = export_deploy_onnx(model, tmp_path / "mt.onnx", (96, 96))
    session = mtvision.export.onnx_session(path)
    assert [o.name for o in session.get_outputs()] == [
        "classification.scores",
        "classification.labels",
        "detection.boxes",
        "detection.scores",
        "detection.labels",
        "detection.num_detections",
        "segmentation.mask",
    ]
    images = _images(2, (96, 96))
    actual = OnnxRuntimeModel(path).run(images)
    expected = DeployModel(model).eval().outputs(images)
    for head, task in [("classification",) * 2, ("detection",) * 2, ("segmentation",) * 2]:
        assert head_agreement(task, expected[head], actual[head]) >= 0.999


def test_dynamic_size_is_refused_for_a_detector(tmp_path):
    with pytest.raises(ExportError, match=r"\['detection'\] need a fixed input size"):
        export_deploy_onnx(_detector(), tmp_path / "x.onnx", None)
    assert not (tmp_path / "x.onnx").exists()


def test_dynamic_size_is_refused_for_tf_same_padding(tmp_path):
    model = mtvision.create_model(
        "deeplabv3_mobilenet_v2", num_classes=3, width_mult=0.35, padding="same"
    )
    with pytest.raises(ExportError, match=r"pads TF-'same' .* pass input_size"):
        export_deploy_onnx(model, tmp_path / "x.onnx", None)


def test_wrong_input_size_names_both_sizes(detector_file):
    _, path = detector_file
    with pytest.raises(ExportError, match=r"takes 96x128 images .* got 100x100"):
        OnnxRuntimeModel(path).run(_images(1, (100, 100)))
    with pytest.raises(ExportError, match="uint8"):
        OnnxRuntimeModel(path).run(np.zeros((1, 3, 96, 128), np.float32))


def test_file_that_does_not_fit_the_config_names_both(detector_file):
    _, path = detector_file
    other = mtvision.create_model("ssdlite320_mobilenet_v2", num_classes=7, width_mult=0.35)
    with pytest.raises(ExportError, match=r"det.onnx: head 'detection' has 4 classes but cfg.py"):
        OnnxRuntimeModel(path, model=other, config_source="cfg.py")
    classifier = mtvision.create_model("mobilenet_v2_035", num_classes=4)
    with pytest.raises(ExportError, match=r"has the heads \['detection'\] but cfg.py builds"):
        OnnxRuntimeModel(path, model=classifier, config_source="cfg.py")


def test_files_without_metadata_or_corrupt_are_named(tmp_path):
    raw = export_onnx(
        mtvision.create_model("mobilenet_v2_035", num_classes=3),
        tmp_path / "raw.onnx",
        (1, 3, 32, 32),
    )
    with pytest.raises(ExportError, match=r"raw.onnx: no 'mtvision' metadata"):
        OnnxRuntimeModel(raw)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ExportError, match=r"corrupt.onnx: not a readable ONNX file"):
        read_deploy_metadata(corrupt)
    with pytest.raises(ExportError, match=r"missing.onnx: no such ONNX file"):
        read_deploy_metadata(tmp_path / "missing.onnx")


def test_no_per_class_cap_gives_the_same_detections_without_the_topk(tmp_path):
    # 258 anchors at 96x128: a cap of 200 makes the graph hold the (N, C, A) top-k.
    capped, uncapped = (
        _detector(seed=1, topk_candidates=200),
        _detector(seed=1, topk_candidates=None),
    )
    images = _images(2, (96, 128), seed=4)
    want = DeployModel(capped).eval().outputs(images)["detection"]
    got = DeployModel(uncapped).eval().outputs(images)["detection"]
    assert int(want["num_detections"].min()) > 5
    assert detection_agreement(want, got) == 1.0 and detection_agreement(got, want) == 1.0
    path = export_deploy_onnx(uncapped, tmp_path / "uncapped.onnx", (96, 128))
    capped_path = export_deploy_onnx(capped, tmp_path / "capped.onnx", (96, 128))

    def top_ks(file):
        return [node.op_type for node in onnx.load(file).graph.node].count("TopK")

    assert top_ks(path) == top_ks(capped_path) - 1  # the (N, C, A) top-k is gone
    assert detection_agreement(want, OnnxRuntimeModel(path).run(images)["detection"]) == 1.0


def test_openvino_runs_the_same_file_with_the_same_results(detector_file, tmp_path):
    pytest.importorskip("openvino", reason="openvino not installed (pip install -e '.[openvino]')")
    _, path = detector_file
    images = _images(2, (96, 128), seed=6)
    want = OnnxRuntimeModel(path).run(images)["detection"]
    got = OnnxRuntimeModel(path, runtime="openvino", threads=1).run(images)["detection"]
    assert got["labels"].dtype == torch.int64 and got["boxes"].shape == want["boxes"].shape
    assert torch.equal(got["num_detections"], want["num_detections"])
    assert detection_agreement(want, got) == 1.0
    with pytest.raises(ExportError, match="unknown runtime 'tensorrt'"):
        OnnxRuntimeModel(path, runtime="tensorrt")
