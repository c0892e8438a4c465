"""MediaPipe Tasks run mtvision's phone graphs (.tflite + MediaPipe metadata) as mtvision's
own predict path does: same top-1, same boxes, same class map."""

import json

import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install -e '.[mediapipe]')")
pytest.importorskip(
    "litert_torch", reason="litert_torch not installed (pip install -e '.[litert]')"
)

from mediapipe_toy import phone_tflite  # noqa: E402

import mtvision  # noqa: E402
from mtvision.errors import ExportError  # noqa: E402
from mtvision.export import DeployedModel  # noqa: E402
from mtvision.export.deploy import DeployModel  # noqa: E402
from mtvision.export.mediapipe_metadata import (  # noqa: E402
    add_mediapipe_metadata,
    minimum_metadata_parser_version,
    model_metadata_entries,
)
from mtvision.utils.parity import randomize_batch_norms_  # noqa: E402

SIZE = (96, 128)


def _images(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *SIZE), dtype=torch.uint8, generator=generator)


def _mediapipe_file(tmp_path, model, classes, name):
    data, metadata = phone_tflite(model, SIZE, classes=classes)
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(add_mediapipe_metadata(data, metadata))
    return path, metadata


def _torch_outputs(model, images, topk=3):
    with torch.no_grad():
        return DeployModel(model.eval(), topk).eval().outputs(images)


def test_metadata_version_is_computed_as_metadata_version_cc():
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    def packed(metadata):
        builder = flatbuffers.Builder(0)
        builder.Finish(metadata.Pack(builder), b"M001")
        return bytes(builder.Output())

    metadata = fb.ModelMetadataT()
    subgraph = fb.SubGraphMetadataT()
    metadata.subgraphMetadata = [subgraph]
    assert minimum_metadata_parser_version(packed(metadata)) == "1.0.0"
    subgraph.inputProcessUnits = []
    assert minimum_metadata_parser_version(packed(metadata)) == "1.1.0"
    subgraph.outputTensorGroups = []
    assert minimum_metadata_parser_version(packed(metadata)) == "1.2.0"
    subgraph.customMetadata = []
    assert minimum_metadata_parser_version(packed(metadata)) == "1.5.0"
    with pytest.raises(ValueError):
        minimum_metadata_parser_version(b"\0" * 16)


def test_classifier_through_mediapipe_has_torchs_top1(tmp_path):
    torch.manual_seed(0)
    model = mtvision.create_model("mobilenet_v2_035", num_classes=6)
    model = randomize_batch_norms_(model, seed=0, input_size=96)
    classes = {"classification": [f"c{i}" for i in range(6)]}
    path, metadata = _mediapipe_file(tmp_path, model, classes, "cls")
    entries = model_metadata_entries(path.read_bytes())
    assert json.loads(entries["mtvision"]) == metadata  # the exporter's entry survives
    assert "TFLITE_METADATA" in entries
    images = _images(4)
    got = DeployedModel(path, runtime="mediapipe").run(images)["classification"]
    want = _torch_outputs(model, images)["classification"]
    assert torch.equal(got["labels"][:, 0], want["labels"][:, 0])
    torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=1e-4)


@pytest.mark.xfail(
    strict=True,
    reason="open: 22% of torch boxes matched at IoU>=0.9 (median best IoU 0.81); MediaPipe's "
    "integer pixel boxes clip the origin but not the size, and its NMS differs",
)
def test_detector_through_mediapipe_gives_torchs_boxes(tmp_path):
    # One class: MediaPipe's class-agnostic NMS over one class per anchor is then the
    # torch head's class-aware NMS.
    torch.manual_seed(1)
    model = mtvision.create_model(
        "ssdlite320_mobilenet_v2", num_classes=1, width_mult=0.35,
        test_cfg=dict(score_threshold=0.5, nms_iou_threshold=0.5, max_detections=20),
    )  # fmt: skip
    model = randomize_batch_norms_(model, seed=1, input_size=96)
    path, _ = _mediapipe_file(tmp_path, model, {"detection": ["thing"]}, "det")
    info = json.loads(model_metadata_entries(path.read_bytes())["mtvision"])["heads"]["detection"]
    assert info["box_code_order"] == "yxhw"
    images = _images(3, seed=2)
    want = _torch_outputs(model, images)["detection"]
    # The LiteRT-side reading of the same file (codes permuted back) is torch's too.
    got = DeployedModel(path, runtime="mediapipe").run(images)["detection"]
    from torchvision.ops import box_iou

    best = []
    for i in range(len(images)):
        n, m = int(want["num_detections"][i]), int(got["num_detections"][i])
        assert n > 0 and m > 0
        best.append(box_iou(want["boxes"][i, :n], got["boxes"][i, :m]).max(dim=1).values)
    best = torch.cat(best)
    matched = float((best >= 0.9).double().mean())
    # MediaPipe's pixel boxes are whole pixels, so IoU 0.99 is out of reach for small boxes.
    print(
        f"detector: {len(best)} torch boxes, matched (IoU>=0.9) {matched:.3f}, "
        f"median best IoU {float(best.median()):.4f}"
    )
    assert matched >= 0.9


def test_segmenter_through_mediapipe_gives_torchs_mask(tmp_path):
    torch.manual_seed(2)
    model = mtvision.create_model("deeplabv3_mobilenet_v2", num_classes=4, width_mult=0.35)
    model = randomize_batch_norms_(model, seed=2, input_size=96)
    path, _ = _mediapipe_file(tmp_path, model, {"segmentation": list("abcd")}, "seg")
    images = _images(2, seed=3)
    got = DeployedModel(path, runtime="mediapipe").run(images)["segmentation"]["mask"]
    want = _torch_outputs(model, images)["segmentation"]["mask"]
    agreement = float((got == want).double().mean())
    print("segmenter pixel agreement", agreement)
    assert agreement >= 0.99


def test_multi_task_file_is_refused_with_its_heads():
    metadata = {"heads": {"classification": {}, "detection": {}}}
    with pytest.raises(ExportError, match=r"one head.*\['classification', 'detection'\]"):
        add_mediapipe_metadata(b"", metadata)
