"""LiteRT (.tflite) export: the phone graph converted by litert-torch, mtvision's metadata
in the flatbuffer, run in LiteRT's interpreter and finished as the torch head does."""

import json
import sys

import numpy as np
import pytest
import torch
from engine_toy import load_tool
from inference_toy import CLASSIFIER, SHAPES, save_random_checkpoint, textured_image
from PIL import Image

import mtvision
from mtvision.engine.cli import run_cli
from mtvision.errors import ExportError
from mtvision.export import DeployedModel, DeployModel, export_deploy_onnx, read_deploy_metadata
from mtvision.export.parity import detection_agreement, head_agreement
from mtvision.utils.parity import randomize_batch_norms_

pytest.importorskip(
    "litert_torch", reason="litert-torch is not installed (pip install -e '.[litert]')"
)
pytest.importorskip(
    "ai_edge_litert.interpreter",
    reason="ai-edge-litert is not installed (pip install -e '.[litert]')",
)

from mtvision.export.litert_export import export_deploy_tflite  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

export_tool = load_tool("export")
eval_tool = load_tool("eval")
predict_tool = load_tool("predict")


def _images(n, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=generator)


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_batch_norms_(
        mtvision.create_model("mobilenet_v2_035", num_classes=10), seed=2, input_size=64
    )
    path = tmp_path_factory.mktemp("cls") / "cls.tflite"
    classes = [f"c{i}" for i in range(10)]
    export_deploy_tflite(
        model, path, (64, 64), classes={"classification": classes}, topk=3,
        source={"config": "cfg.py"},
    )  # fmt: skip
    return model, path


def test_classifier_file_takes_nhwc_uint8_and_returns_probabilities(classifier_file):
    model, path = classifier_file
    interpreter = _interpreter(path)
    (inp,) = interpreter.get_input_details()
    assert inp["name"] == "images" and inp["dtype"] == np.uint8
    assert inp["shape"].tolist() == [1, 64, 64, 3]  # batch fixed to 1
    assert [o["name"] for o in interpreter.get_output_details()] == ["probabilities"]
    images = _images(3, (64, 64))
    deploy = DeployModel(model, topk=3, phone=True, channels_last=True).eval()
    for image in images:
        nhwc = image.permute(1, 2, 0)[None].contiguous()
        interpreter.set_tensor(inp["index"], nhwc.numpy())
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        with torch.no_grad():
            want = deploy.outputs(nhwc)["classification"]["probabilities"].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert got.sum() == pytest.approx(1.0, abs=1e-5)


def test_classifier_metadata_and_topk_through_the_runtime(classifier_file):
    model, path = classifier_file
    metadata = read_deploy_metadata(path)
    assert metadata["input_layout"] == "NHWC" and metadata["input_size"] == [64, 64]
    assert metadata["source"] == {"config": "cfg.py"}
    head = metadata["heads"]["classification"]
    assert head["classes"] == [f"c{i}" for i in range(10)]
    assert head["outputs"] == {"probabilities": "probabilities"} and head["phone_outputs"]
    deployed = DeployedModel(path)
    assert deployed.runtime == "litert"
    images = _images(4, (64, 64), seed=1)  # a batch of 4 through a batch-1 file
    actual = deployed.run(images)["classification"]
    expected = DeployModel(model, topk=3).eval().outputs(images)["classification"]
    assert torch.equal(actual["labels"], expected["labels"])
    torch.testing.assert_close(actual["scores"], expected["scores"], atol=1e-5, rtol=0)


@pytest.mark.slow  # one more conversion (10-20 s each); the multi-task file covers every head fast
def test_detector_raw_outputs_finished_give_torchs_boxes(tmp_path):
    torch.manual_seed(1)
    model = mtvision.create_model(
        "ssdlite320_mobilenet_v2", num_classes=4, width_mult=0.35,
        test_cfg=dict(score_threshold=0.3),
    )  # fmt: skip
    model = randomize_batch_norms_(model, seed=1, input_size=96)
    path = export_deploy_tflite(model, tmp_path / "det.tflite", (96, 128))
    metadata = read_deploy_metadata(path)
    head = metadata["heads"]["detection"]
    assert head["outputs"] == {"anchor_scores": "anchor_scores", "box_regression": "box_regression"}
    assert len(head["anchors"]) > 100 and head["box_coder_weights"] == [10.0, 10.0, 5.0, 5.0]
    names = [o["name"] for o in _interpreter(path).get_output_details()]
    assert names == ["anchor_scores", "box_regression"]
    images = _images(3, (96, 128))
    actual = DeployedModel(path).run(images)["detection"]
    expected = DeployModel(model).eval().outputs(images)["detection"]
    assert expected["num_detections"].min() > 5, "too few detections to compare"
    assert torch.equal(actual["num_detections"], expected["num_detections"])
    # Matched as sets, corners within ~0.01 px (IoU >= 0.999 on these boxes): XNNPACK sums
    # in another order (raw regressions ~3e-5 of their scale apart, up to ~1e-3 px after
    # exp(dw / 5)), and near-equal scores may come out in another order.
    assert detection_agreement(expected, actual, iou_threshold=0.999) == 1.0


@pytest.mark.slow  # one more conversion (10-20 s each); the multi-task file covers every head fast
@pytest.mark.parametrize("class_map", [False, True])
def test_segmenter_scores_or_class_map_agree_with_torch(tmp_path, class_map):
    torch.manual_seed(0)
    model = randomize_batch_norms_(
        mtvision.create_model("deeplabv3_mobilenet_v2", num_classes=5, width_mult=0.35),
        seed=3,
        input_size=64,
    )
    path = export_deploy_tflite(model, tmp_path / "seg.tflite", (64, 80), class_map=class_map)
    field = "mask" if class_map else "class_logits"
    output = _interpreter(path).get_output_details()[0]
    assert output["name"] == field
    assert output["shape"].tolist() == ([1, 64, 80] if class_map else [1, 64, 80, 5])
    assert output["dtype"] == (np.uint8 if class_map else np.float32)
    images = _images(2, (64, 80))
    actual = DeployedModel(path).run(images)["segmentation"]
    expected = DeployModel(model).eval().outputs(images)["segmentation"]
    assert actual["mask"].shape == (2, 64, 80)
    assert len(expected["mask"].unique()) > 1
    assert head_agreement("segmentation", expected, actual) >= 0.999


def test_multitask_file_names_outputs_by_head(tmp_path):
    torch.manual_seed(0)
    model = mtvision.create_model(
        "mobilenet_v2_multitask",
        num_classes=dict(classification=5, detection=3, segmentation=4),
        width_mult=0.35,
    )
    model = randomize_batch_norms_(model, seed=5, input_size=96)
    path = export_deploy_tflite(model, tmp_path / "mt.tflite", (96, 96))
    assert [o["name"] for o in _interpreter(path).get_output_details()] == [
        "classification.probabilities",
        "detection.anchor_scores",
        "detection.box_regression",
        "segmentation.class_logits",
    ]
    images = _images(2, (96, 96))
    actual = DeployedModel(path).run(images)
    expected = DeployModel(model).eval().outputs(images)
    for head in ("classification", "detection", "segmentation"):
        assert head_agreement(head, expected[head], actual[head]) >= 0.999


def test_files_without_metadata_or_corrupt_are_named(classifier_file, tmp_path):
    from mtvision.export.litert_metadata import tflite_metadata_entries

    _, path = classifier_file
    content = path.read_bytes()
    entries = tflite_metadata_entries(content)
    assert json.loads(entries["mtvision"]) == read_deploy_metadata(path)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer" * 4)
    with pytest.raises(ExportError, match=r"corrupt.tflite: not a .tflite file"):
        read_deploy_metadata(corrupt)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(content[:64])
    with pytest.raises(ExportError, match=r"truncated.tflite: a corrupt .tflite file"):
        read_deploy_metadata(truncated)
    with pytest.raises(ExportError, match=r"missing.tflite: no such .tflite file"):
        read_deploy_metadata(tmp_path / "missing.tflite")


def test_missing_runtime_is_a_one_line_install_hint(classifier_file, monkeypatch):
    _, path = classifier_file
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # as if not installed
    with pytest.raises(ExportError) as error:
        DeployedModel(path)
    assert str(error.value) == (
        f"{path}: the litert runtime is not installed (pip install -e '.[litert]')"
    )


def test_missing_converter_is_a_one_line_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    model = mtvision.create_model("mobilenet_v2_035", num_classes=3)
    with pytest.raises(ExportError, match=r"^exporting .tflite files needs litert-torch "
                       r"\(pip install -e '.\[litert\]'\)$"):  # fmt: skip
        export_deploy_tflite(model, tmp_path / "x.tflite", (32, 32))
    assert not (tmp_path / "x.tflite").exists()


# ------------------------------------------------------------------------ the tools


@pytest.fixture(scope="module")
def classifier_tool_file(tmp_path_factory, tiny_shapes):
    """The demo classifier config's model (random weights) through tools/export.py."""
    root = tmp_path_factory.mktemp("tool")
    checkpoint = root / "cls.pth"
    model = save_random_checkpoint(CLASSIFIER, checkpoint, {"classes": SHAPES})
    options = ["--cfg-options", f"test_dataloader.dataset.data_root={tiny_shapes / 'imagenet'}"]
    out = root / "cls.tflite"
    agreements = export_tool.main(
        [CLASSIFIER, str(checkpoint), "--out", str(out), "--check-images", "4", *options]
    )
    return model, checkpoint, out, options, agreements


def test_tool_exports_and_verifies_the_tflite(classifier_tool_file, capsys):
    _, _, out, _, agreements = classifier_tool_file
    assert agreements == {"classification": 1.0}
    metadata = read_deploy_metadata(out)
    assert metadata["heads"]["classification"]["classes"] == list(SHAPES)
    assert metadata["source"]["config"] == CLASSIFIER


@pytest.mark.slow  # one more conversion (10-20 s each); the multi-task file covers every head fast
def test_tool_failed_check_keeps_the_previous_file(classifier_tool_file, capsys):
    _, checkpoint, out, options, _ = classifier_tool_file
    before = out.read_bytes()
    argv = [CLASSIFIER, str(checkpoint), "--out", str(out), "--check-images", "2"]
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: export_tool.main([*argv, "--min-agreement", "1.5", *options]))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: litert agrees with torch on {{'classification': 1.0}}")
    assert err.endswith(f"the export was rejected and {out} was left as it was\n")
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["cls.pth", "cls.tflite"]


def test_eval_of_the_tflite_equals_the_onnx_file(classifier_tool_file, tmp_path):
    model, _, out, options, _ = classifier_tool_file
    onnx_file = tmp_path / "cls.onnx"
    export_deploy_onnx(model, onnx_file, (64, 64), classes={"classification": list(SHAPES)})
    metrics = {
        str(file): eval_tool.main(
            [CLASSIFIER, str(file), "--work-dir", str(tmp_path / file.suffix[1:]), *options]
        )
        for file in (out, onnx_file)
    }
    tflite_metrics, onnx_metrics = metrics[str(out)], metrics[str(onnx_file)]
    assert tflite_metrics["accuracy/top1"] == pytest.approx(onnx_metrics["accuracy/top1"], abs=1e-9)
    assert tflite_metrics["accuracy/top5"] == pytest.approx(onnx_metrics["accuracy/top5"], abs=1e-9)


def test_predict_litert_backend_writes_torchs_results(classifier_tool_file, tmp_path, capsys):
    _, checkpoint, out, _, _ = classifier_tool_file
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(textured_image(50, 70)).save(photos / "a.png")
    documents = {}
    for backend, extra in (("torch", []), ("litert", ["--model", str(out)])):
        target = tmp_path / backend
        argv = [CLASSIFIER, str(checkpoint) if backend == "torch" else "-", str(photos)]
        run_cli(lambda argv=argv, backend=backend, extra=extra, target=target: predict_tool.main(
            [*argv, "--out-dir", str(target), "--backend", backend, *extra]
        ))  # fmt: skip
        documents[backend] = json.loads((target / "photos" / "a.json").read_text())
    torch_doc, litert_doc = documents["torch"], documents["litert"]
    assert list(litert_doc) == list(torch_doc)
    for key, value in torch_doc.items():
        if isinstance(value, list) and value and isinstance(value[0], float):
            np.testing.assert_allclose(litert_doc[key], value, atol=1e-5)
        else:
            assert litert_doc[key] == value, key


def test_file_of_another_config_names_both(classifier_file):
    _, path = classifier_file
    other = mtvision.create_model("mobilenet_v2_035", num_classes=7)
    with pytest.raises(ExportError, match=r"cls.tflite: head 'classification' has 10 classes but "
                       r"cfg.py"):  # fmt: skip
        DeployedModel(path, model=other, config_source="cfg.py")
    with pytest.raises(ExportError, match=r"cls.tflite takes 64x64 images .* got 80x80"):
        DeployedModel(path).run(_images(1, (80, 80)))


# ------------------------------------------------------------------------------ int8


@pytest.mark.slow  # one more conversion (10-20 s each); the multi-task file covers every head fast
def test_int8_tflite_follows_the_float_model_and_refuses_itself(tmp_path):
    from mtvision.export.litert_quantize import quantize_tflite

    torch.manual_seed(0)
    model = randomize_batch_norms_(
        mtvision.create_model("mobilenet_v2_035", num_classes=10), seed=2, input_size=64
    )
    with torch.no_grad():  # class scores far from ties (a fresh last layer starts near 0)
        torch.nn.init.normal_(model.heads.classification.fc.weight, std=0.3)
    source = export_deploy_tflite(model, tmp_path / "cls.tflite", (64, 64))
    images = torch.stack(
        [torch.from_numpy(textured_image(64, 64, seed=s)).permute(2, 0, 1) for s in range(48)]
    )
    target = tmp_path / "cls.int8.tflite"
    record = quantize_tflite(source, target, list(images[:32]))
    assert record["calibration_images"] == 32 and record["source"] == str(source)
    metadata = read_deploy_metadata(target)
    assert metadata["quantization"] == record
    assert {k: v for k, v in metadata.items() if k != "quantization"} == read_deploy_metadata(
        source
    )
    assert record["float_layers"] == ["FULLY_CONNECTED", "SOFTMAX"]
    interpreter = _interpreter(target)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.float32  # probabilities, float
    kinds = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert "int8" in kinds
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert ops.index("DEQUANTIZE") < ops.index("FULLY_CONNECTED")  # int8 features, float fc
    assert target.stat().st_size < 0.5 * (tmp_path / "cls.tflite").stat().st_size
    held_out = images[32:]  # 16 images the calibration did not see
    actual = DeployedModel(target).run(held_out)["classification"]
    expected = DeployModel(model).eval().outputs(held_out)["classification"]
    top1 = float((actual["labels"][:, 0] == expected["labels"][:, 0]).float().mean())
    assert top1 >= 0.75  # measured 14/16 for this random network
    with pytest.raises(ExportError) as error:
        quantize_tflite(target, tmp_path / "again.tflite", list(images[:2]))
    assert str(error.value) == (
        f"{target} is already int8 (32 calibration images); quantise the float file it "
        f"came from, {source}"
    )
    assert not (tmp_path / "again.tflite").exists()


def test_quantize_tool_tflite_branch(classifier_tool_file, tmp_path, capsys):
    _, _, out, options, _ = classifier_tool_file
    quantize_tool = load_tool("quantize")
    target = tmp_path / "cls.int8.tflite"
    record = quantize_tool.main(
        [CLASSIFIER, str(out), "--out", str(target), "--calib", "4", *options]
    )
    assert record["calibration_images"] == 4
    assert f"wrote {target}: static int8" in capsys.readouterr().out
    assert read_deploy_metadata(target)["quantization"]["source"] == str(out)
    with pytest.raises(SystemExit):
        run_cli(lambda: quantize_tool.main(
            [CLASSIFIER, str(target), "--out", str(tmp_path / "x.tflite"), "--calib", "2", *options]
        ))  # fmt: skip
    assert capsys.readouterr().err == (
        f"error: {target} is already int8 (4 calibration images); quantise the float file "
        f"it came from, {out}\n"
    )
