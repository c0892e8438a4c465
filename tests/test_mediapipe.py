"""MediaPipe Tasks run mtvision's phone graphs (.tflite + MediaPipe metadata) as mtvision's
own predict path does: same top-1, same boxes, same class map."""

import gc
import json
import sys

import numpy as np
import pytest
import torch
from engine_toy import load_tool
from inference_toy import CLASSIFIER, SHAPES, save_random_checkpoint, textured_image
from PIL import Image

pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install -e '.[mediapipe]')")
pytest.importorskip(
    "litert_torch", reason="litert_torch not installed (pip install -e '.[litert]')"
)

from mediapipe_toy import phone_tflite  # noqa: E402

import mtvision  # noqa: E402
from mtvision.engine.cli import run_cli  # noqa: E402
from mtvision.errors import ExportError  # noqa: E402
from mtvision.export import DeployedModel  # noqa: E402
from mtvision.export.deploy import DeployModel  # noqa: E402
from mtvision.export.mediapipe_metadata import (  # noqa: E402
    MEDIAPIPE_NMS_IOU,
    add_mediapipe_metadata,
    minimum_metadata_parser_version,
    model_metadata_entries,
)
from mtvision.ops import BoxCoder  # noqa: E402
from mtvision.utils.parity import randomize_batch_norms_  # noqa: E402

predict_tool = load_tool("predict")
eval_tool = load_tool("eval")

SIZE = (96, 128)


def _images(n, seed=0):
    return _images_of(SIZE, n, seed)


def _images_of(size, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=generator)


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


@pytest.fixture(scope="module")
def classifier_tool_file(tmp_path_factory):
    """The demo classifier config's model (seeded random weights) as a MediaPipe-ready
    .tflite at the config's 64x64, with its checkpoint (shared by the tests below)."""
    root = tmp_path_factory.mktemp("mp_cls")
    checkpoint = root / "cls.pth"
    model = save_random_checkpoint(CLASSIFIER, checkpoint, {"classes": SHAPES})
    data, metadata = phone_tflite(model, (64, 64), classes={"classification": list(SHAPES)}, topk=5)
    path = root / "cls.tflite"
    path.write_bytes(add_mediapipe_metadata(data, metadata))
    return model, checkpoint, path, metadata


def test_classifier_through_mediapipe_has_torchs_top1(classifier_tool_file):
    model, _, path, metadata = classifier_tool_file
    entries = model_metadata_entries(path.read_bytes())
    assert json.loads(entries["mtvision"]) == metadata  # the exporter's entry survives
    assert "TFLITE_METADATA" in entries
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=generator)
    got = DeployedModel(path, runtime="mediapipe").run(images)["classification"]
    want = _torch_outputs(model, images, topk=5)["classification"]
    assert torch.equal(got["labels"][:, 0], want["labels"][:, 0])
    torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=1e-4)


def test_predict_mediapipe_backend_writes_torchs_results(classifier_tool_file, tmp_path):
    _, checkpoint, path, _ = classifier_tool_file
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(textured_image(50, 70)).save(photos / "a.png")
    documents = {}
    for backend, extra in (("torch", []), ("mediapipe", ["--model", str(path)])):
        target = tmp_path / backend
        argv = [CLASSIFIER, str(checkpoint) if backend == "torch" else "-", str(photos)]
        code = run_cli(lambda argv=argv, backend=backend, extra=extra, target=target: predict_tool.main(
            [*argv, "--out-dir", str(target), "--backend", backend, *extra]
        ))  # fmt: skip
        assert code in (None, 0)
        documents[backend] = json.loads((target / "photos" / "a.json").read_text())
    torch_doc, mp_doc = documents["torch"], documents["mediapipe"]
    assert list(mp_doc) == list(torch_doc)
    for key, value in torch_doc.items():
        if isinstance(value, list) and value and isinstance(value[0], float):
            np.testing.assert_allclose(mp_doc[key], value, atol=1e-4)
        else:
            assert mp_doc[key] == value, key


def test_eval_mediapipe_backend_equals_torch(classifier_tool_file, tiny_shapes, tmp_path):
    """Two runners in one process: the second one's ``gc.collect()`` collects the first
    runner's cycle with its MediaPipe Task (which hung before ``close_with``)."""
    _, checkpoint, path, _ = classifier_tool_file
    options = [
        "--cfg-options",
        f"test_dataloader.dataset.data_root={tiny_shapes / 'imagenet'}",
        "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
    ]
    got = eval_tool.main(
        [CLASSIFIER, str(path), "--backend", "mediapipe", "--work-dir", str(tmp_path / "mp"),
         *options]
    )  # fmt: skip
    want = eval_tool.main(
        [CLASSIFIER, str(checkpoint), "--work-dir", str(tmp_path / "pt"), *options]
    )
    assert got["accuracy/top1"] == pytest.approx(want["accuracy/top1"], abs=1e-9)


@pytest.mark.timeout(120)
def test_a_task_in_a_garbage_cycle_is_closed_by_the_collector(classifier_tool_file):
    from mtvision.export.mediapipe_runtime import open_mediapipe

    _, _, path, _ = classifier_tool_file
    run, _ = open_mediapipe(str(path))
    run(np.zeros((1, 64, 64, 3), np.uint8))
    closer = run.close
    cycle = {"run": run}
    cycle["cycle"] = cycle  # as mmengine's Runner holds the model
    del run, cycle
    gc.collect()  # hung in the Task's __del__ before close_with
    assert not closer.alive


def test_missing_mediapipe_is_a_one_line_install_hint(classifier_tool_file, tmp_path, monkeypatch,
                                                       capsys):  # fmt: skip
    _, _, path, _ = classifier_tool_file
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError
    Image.fromarray(textured_image(40, 40)).save(tmp_path / "a.png")
    argv = [CLASSIFIER, "-", str(tmp_path / "a.png"), "--backend", "mediapipe", "--model", str(path),
            "--out-dir", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: predict_tool.main(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {path}: the mediapipe runtime is not installed (pip install -e '.[mediapipe]')\n"
    )


# ------------------------------------------------------------------------- detection

DET_SIZE = (96, 128)
#: A one-class detector whose test_cfg NMS is MediaPipe's fixed IoU 0.3.
DET_CFG = dict(score_threshold=0.5, nms_iou_threshold=MEDIAPIPE_NMS_IOU, max_detections=20)


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    torch.manual_seed(1)
    model = mtvision.create_model(
        "ssdlite320_mobilenet_v2", num_classes=1, width_mult=0.35, test_cfg=DET_CFG
    )
    model = randomize_batch_norms_(model, seed=1, input_size=96).eval()
    data, metadata = phone_tflite(model, DET_SIZE, classes={"detection": ["thing"]})
    path = tmp_path_factory.mktemp("mp_det") / "det.tflite"
    path.write_bytes(add_mediapipe_metadata(data, metadata))
    return model, path, metadata


def _mediapipe_detections(path, image, cfg):
    """MediaPipe ObjectDetector's raw results: [(score, index, x, y, w, h)] whole pixels
    (``index`` may be None: MediaPipe names the category)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        max_results=cfg["max_detections"],
        score_threshold=cfg["score_threshold"],
    )
    detector = vision.ObjectDetector.create_from_options(options)
    try:
        picture = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        found = detector.detect(picture).detections
    finally:
        detector.close()
    return [
        (d.categories[0].score, d.categories[0].index, d.bounding_box.origin_x,
         d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height)
        for d in found
    ]  # fmt: skip


def _what_mediapipe_should_do(scores, codes, info, input_size):
    """MediaPipe's documented SSD post-processing (mtvision.export.mediapipe_metadata),
    written out from the phone graph's raw torch outputs of one image: the best class of
    each anchor, score >= threshold, greedy class-agnostic NMS at IoU > 0.3 on unclipped
    boxes, max_results, then int() pixels with the origin clamped."""
    from torchvision.ops import box_iou

    cfg = info["test_cfg"]
    boxes = BoxCoder(tuple(info["box_coder_weights"])).decode(
        codes[:, [1, 0, 3, 2]], torch.tensor(info["anchors"])
    )
    best, labels = scores.max(dim=1)
    order = [int(i) for i in best.argsort(descending=True) if best[i] >= cfg["score_threshold"]]
    kept = []
    for i in order:
        if all(
            float(box_iou(boxes[i : i + 1], boxes[j : j + 1])) <= MEDIAPIPE_NMS_IOU for j in kept
        ):
            kept.append(i)
        if len(kept) == cfg["max_detections"]:
            break
    height, width = input_size
    out = []
    for i in kept:
        x1, y1, x2, y2 = boxes[i].tolist()
        out.append((float(best[i]), int(labels[i]), min(max(int(x1), 0), width),
                    min(max(int(y1), 0), height), min(max(int(x2 - x1), 0), width),
                    min(max(int(y2 - y1), 0), height)))  # fmt: skip
    return out


def test_mediapipe_decodes_and_suppresses_as_documented(detector_file):
    """The metadata (anchors, scales, (ty, tx, th, tw) order, threshold) is read as meant:
    MediaPipe's boxes are, to the pixel, the documented post-processing of torch's raw
    outputs."""
    model, path, metadata = detector_file
    info = metadata["heads"]["detection"]
    assert info["box_code_order"] == "yxhw"
    images = _images_of(DET_SIZE, 3, seed=2)
    with torch.no_grad():
        scores, codes = DeployModel(model, 3, phone=True, channels_last=True).eval()(
            images.permute(0, 2, 3, 1).contiguous()
        )
    total = 0
    for i in range(len(images)):
        got = _mediapipe_detections(path, images[i].permute(1, 2, 0).numpy(), info["test_cfg"])
        want = _what_mediapipe_should_do(scores[i], codes[i], info, DET_SIZE)
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            assert g[0] == pytest.approx(w[0], abs=1e-4)  # float32 LiteRT vs torch
            # float32 products may land on the other side of a whole pixel
            assert max(abs(a - b) for a, b in zip(g[2:], w[2:], strict=True)) <= 1, (g, w)
        total += len(got)
    print(f"detector: {total} MediaPipe detections equal the documented post-processing")


def test_one_class_detector_through_mediapipe_gives_torchs_boxes(detector_file):
    """One class, NMS at MediaPipe's IoU 0.3: MediaPipe's detections are torch's (same
    scores), corners within one pixel, except where torch clipped the box at the left or
    top border (MediaPipe keeps the full extent there: its far edge is unknown) and
    where clipping before NMS changed which overlapping box survived."""
    model, path, _ = detector_file
    images = _images_of(DET_SIZE, 3, seed=2)
    want = _torch_outputs(model, images)["detection"]
    got = DeployedModel(path, runtime="mediapipe").run(images)["detection"]
    matched = inside = 0
    corner_errors = []
    for i in range(len(images)):
        n, m = int(want["num_detections"][i]), int(got["num_detections"][i])
        assert n > 0 and m > 0
        # the best detection is never suppressed: the same in both
        assert float(got["scores"][i, 0]) == pytest.approx(float(want["scores"][i, 0]), abs=1e-5)
        assert (got["boxes"][i, 0] - want["boxes"][i, 0]).abs().max() <= 1 or float(
            want["boxes"][i, 0, :2].min()) < 1  # fmt: skip
        for k in range(n):
            box = want["boxes"][i, k]
            if float(box[:2].min()) < 1:  # clipped at the left/top: MediaPipe's far edge unknown
                continue
            inside += 1
            # 1e-4: LiteRT's float32 scores differ from torch's by ~1e-5 (thread count)
            same = (got["scores"][i, :m] - want["scores"][i, k]).abs() < 1e-4
            if same.any():
                j = int(same.nonzero()[0])
                error = float((got["boxes"][i, j] - box).abs().max())
                corner_errors.append(error)
                matched += error <= 1.0
    corner_errors = torch.tensor(corner_errors)
    print(
        f"detector vs torch: {matched}/{inside} detections off the left/top border matched "
        f"(same score, corners within 1 px; max corner error {float(corner_errors.max()):.2f} px,"
        f" mean {float(corner_errors.mean()):.2f})"
    )
    assert matched >= 0.85 * inside


@pytest.mark.slow
def test_several_classes_keep_the_top_detection(tmp_path):
    """Several classes: MediaPipe keeps one class per anchor and suppresses across classes,
    so only the top detection of each image is sure to be torch's (module docstring)."""
    torch.manual_seed(3)
    model = mtvision.create_model(
        "ssdlite320_mobilenet_v2", num_classes=3, width_mult=0.35, test_cfg=DET_CFG
    )
    model = randomize_batch_norms_(model, seed=3, input_size=96).eval()
    path, _ = _mediapipe_file(tmp_path, model, {"detection": ["a", "b", "c"]}, "det3")
    images = _images_of(DET_SIZE, 3, seed=4)
    want = _torch_outputs(model, images)["detection"]
    got = DeployedModel(path, runtime="mediapipe").run(images)["detection"]
    for i in range(len(images)):
        assert float(got["scores"][i, 0]) == pytest.approx(float(want["scores"][i, 0]), abs=1e-5)
        assert int(got["labels"][i, 0]) == int(want["labels"][i, 0])
        if float(want["boxes"][i, 0, :2].min()) >= 1:
            assert float((got["boxes"][i, 0] - want["boxes"][i, 0]).abs().max()) <= 1
    print("several classes: detections", want["num_detections"].tolist(), "torch vs",
          got["num_detections"].tolist(), "MediaPipe")  # fmt: skip


@pytest.mark.slow
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
