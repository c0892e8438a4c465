"""ExecuTorch (.pte) export of the phone graph: the program run by ExecuTorch's runtime
(XNNPACK) and finished by DeployedModel gives torch's results for every task; int8;
tools/export.py, tools/eval.py and tools/predict.py on .pte files; bad files named."""

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from engine_toy import load_tool, loader_options
from inference_toy import DETECTOR, SHAPES, save_random_checkpoint, textured_image
from PIL import Image
from realdata_calibration import (
    classifier_calibration_photos,
    pipeline_images,
    resized_images,
    segmentation_calibration_photos,
)

import mtvision
from mtvision.engine.cli import run_cli
from mtvision.errors import ExportError
from mtvision.export import DeployedModel, DeployModel, read_deploy_metadata
from mtvision.export.parity import head_agreement
from mtvision.synthetic.shapes import generate_shapes_dataset
from mtvision.tasks.detection import detection_agreement
from mtvision.utils.parity import randomize_batch_norms_

try:
    import executorch.runtime  # noqa: F401
except ImportError:
    pytest.skip(
        "executorch not installed (pip install -e '.[executorch]')", allow_module_level=True
    )

from mtvision.export.executorch_export import export_deploy_executorch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

CLASSIFIER = "configs/demo/mobilenetv2_shapes.py"
export_tool = load_tool("export")
eval_tool = load_tool("eval")
predict_tool = load_tool("predict")


def _images(n, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8, generator=generator)


def _textured(n, size):
    return torch.stack(
        [torch.from_numpy(textured_image(*size, seed=i)).permute(2, 0, 1) for i in range(n)]
    )


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A tiny shapes set (ImageNet layout) and the loader options that point the demo
    classifier config at it."""
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(root, seed=3, num_train=6, num_val=12)
    options = loader_options(
        f"dataset.data_root={root / 'imagenet'}", "num_workers=0", "persistent_workers=False"
    )
    return options


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, shapes):
    """The demo classifier (random weights) as a checkpoint, exported by tools/export.py
    to a float .pte and an int8 .pte (and a .onnx to compare with)."""
    root = tmp_path_factory.mktemp("classifier")
    checkpoint = root / "cls.pth"
    model = save_random_checkpoint(CLASSIFIER, checkpoint, {"classes": SHAPES}, seed=4)
    common = [CLASSIFIER, str(checkpoint), "--check-images", "4", "--cfg-options", *shapes]
    float_file, int8_file, onnx_file = root / "cls.pte", root / "cls.int8.pte", root / "cls.onnx"
    agreements = export_tool.main([*common[:2], "--out", str(float_file), *common[2:]])
    int8_agreements = export_tool.main(
        [*common[:2], "--out", str(int8_file), "--int8", "--calib", "8",
         "--min-agreement", "0.5", *common[2:]]
    )  # fmt: skip
    export_tool.main([*common[:2], "--out", str(onnx_file), *common[2:]])
    return {
        "model": model.eval(),
        "checkpoint": checkpoint,
        "float": float_file,
        "int8": int8_file,
        "onnx": onnx_file,
        "agreements": agreements,
        "int8_agreements": int8_agreements,
    }


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """The demo detector (160x160, random weights) as a checkpoint and a float .pte."""
    root = tmp_path_factory.mktemp("detector")
    checkpoint = root / "det.pth"
    model = save_random_checkpoint(DETECTOR, checkpoint, {"classes": SHAPES}).eval()
    path = export_deploy_executorch(
        model, root / "det.pte", (160, 160), classes={"detection": list(SHAPES)}
    )
    return model, checkpoint, path


# ------------------------------------------------------------------ classifier


@pytest.mark.slow  # the classifier fixture: three exports (~1 min); the default run keeps the bad-input checks
def test_tool_writes_a_checked_classifier_pte(classifier):
    assert classifier["agreements"] == {"classification": 1.0}
    metadata = read_deploy_metadata(classifier["float"])
    assert metadata["input_layout"] == "NHWC" and metadata["input_size"] == [64, 64]
    assert metadata["output_names"] == ["probabilities"] and metadata["batch"] == 1
    assert metadata["heads"]["classification"]["classes"] == list(SHAPES)
    assert metadata["source"]["config"] == CLASSIFIER
    assert "quantization" not in metadata
    # The program's probabilities are torch's phone graph's.
    images = _textured(3, (64, 64))
    deployed = DeployedModel(classifier["float"], runtime="executorch")
    raw = deployed.session.run(images.permute(0, 2, 3, 1).numpy())
    phone = DeployModel(classifier["model"], phone=True).eval()
    with torch.no_grad():
        expected = phone.outputs(images)["classification"]["probabilities"]
    assert raw["probabilities"].shape == (3, 6)
    np.testing.assert_allclose(raw["probabilities"], expected.numpy(), atol=1e-5)
    # Finished by DeployedModel: the ONNX graph's top-k, equal to torch's.
    finished = deployed.run(images)["classification"]
    want = DeployModel(classifier["model"]).eval().outputs(images)["classification"]
    assert torch.equal(finished["labels"], want["labels"])
    assert torch.allclose(finished["scores"], want["scores"], atol=1e-5)


@pytest.mark.slow  # the classifier fixture: three exports (~1 min); the default run keeps the bad-input checks
def test_int8_classifier_is_quantised_and_follows_float(classifier):
    metadata = read_deploy_metadata(classifier["int8"])
    assert metadata["quantization"]["weights"] == "int8 symmetric per-channel"
    assert metadata["quantization"]["calibration_images"] == 8
    # int8 weights: the program is far smaller than the float one.
    assert os.path.getsize(classifier["int8"]) < 0.5 * os.path.getsize(classifier["float"])
    assert classifier["int8_agreements"]["classification"] >= 0.5
    images = _textured(4, (64, 64))
    int8 = DeployedModel(classifier["int8"]).session.run(images.permute(0, 2, 3, 1).numpy())
    with torch.no_grad():
        expected = DeployModel(classifier["model"], phone=True).eval().outputs(images)
    difference = np.abs(int8["probabilities"] - expected["classification"]["probabilities"].numpy())
    assert 0 < difference.max() < 0.25  # quantised (not equal), yet close


@pytest.mark.slow  # one more lowering (20-70 s each); the classifier fixture covers the fast path
def test_tool_failed_check_keeps_the_previous_file(classifier, shapes, tmp_path, capsys):
    out = tmp_path / "cls.pte"
    out.write_bytes(classifier["float"].read_bytes())
    accepted = hashlib.md5(out.read_bytes()).hexdigest()
    argv = [CLASSIFIER, str(classifier["checkpoint"]), "--out", str(out), "--check-images", "1",
            "--min-agreement", "1.5", "--cfg-options", *shapes]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: export_tool.main(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {out}: executorch agrees with torch on {{'classification': 1.0}} (1 images), "
        f"below --min-agreement 1.5; the export was rejected and {out} was left as it was\n"
    )
    assert hashlib.md5(out.read_bytes()).hexdigest() == accepted
    assert sorted(os.listdir(tmp_path)) == ["cls.pte"]


@pytest.mark.slow  # the classifier fixture: three exports (~1 min); the default run keeps the bad-input checks
def test_eval_of_the_pte_equals_torch_and_onnx(classifier, shapes, tmp_path):
    metrics = {}
    for name, file in [("torch", classifier["checkpoint"]), ("onnx", classifier["onnx"]),
                       ("pte", classifier["float"])]:  # fmt: skip
        metrics[name] = eval_tool.main(
            [CLASSIFIER, str(file), "--work-dir", str(tmp_path / name), "--cfg-options", *shapes]
        )
    assert metrics["pte"]["accuracy/top1"] == metrics["torch"]["accuracy/top1"]
    assert metrics["pte"] == pytest.approx(metrics["onnx"], abs=1e-9)


@pytest.mark.slow  # the classifier fixture: three exports (~1 min); the default run keeps the bad-input checks
def test_pte_of_another_config_names_both(classifier):
    other = mtvision.create_model("mobilenet_v2_035", num_classes=9)
    with pytest.raises(
        ExportError, match=r"cls.pte: head 'classification' has 6 classes but cfg.py"
    ):
        DeployedModel(classifier["float"], model=other, config_source="cfg.py")
    detector = mtvision.create_model("ssdlite320_mobilenet_v2", num_classes=6, width_mult=0.35)
    with pytest.raises(ExportError, match=r"has the heads \['classification'\] but cfg.py builds"):
        DeployedModel(classifier["float"], model=detector, config_source="cfg.py")


@pytest.mark.slow  # the classifier fixture: three exports (~1 min); the default run keeps the bad-input checks
def test_eval_of_a_pte_of_another_config_is_one_line(classifier, tmp_path, capsys):
    argv = [DETECTOR, str(classifier["float"]), "--work-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: eval_tool.main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(classifier["float"]) in err and DETECTOR in err


# ------------------------------------------------------------------ detector


@pytest.mark.slow  # one more lowering (20-70 s each); the classifier fixture covers the fast path
def test_detector_boxes_are_torchs_within_float32_rounding(detector):
    """Random weights give box regressions up to ~9: torch's own float32 boxes differ from
    float64's by ~1e-3 px here, and XNNPACK's (another summation order) by as much again."""
    model, _, path = detector
    metadata = read_deploy_metadata(path)
    assert metadata["output_names"] == ["anchor_scores", "box_regression"]
    assert len(metadata["heads"]["detection"]["anchors"]) > 0
    images = _textured(2, (160, 160))
    actual = DeployedModel(path).run(images)["detection"]
    expected = DeployModel(model).eval().outputs(images)["detection"]
    assert torch.equal(actual["num_detections"], expected["num_detections"])
    assert int(expected["num_detections"].min()) > 3, "too few detections to compare"
    # As sets (detection_agreement): near-equal scores may come out in another order, and
    # a full list's last place is a tie (the thread count moves float32 scores by ~1e-5).
    # IoU >= 0.999 is corners within ~0.01 px for these 20-110 px boxes.
    assert detection_agreement(expected, actual, iou_threshold=0.999, score_tolerance=5e-4) == 1.0


@pytest.mark.slow  # one more lowering (20-70 s each); the classifier fixture covers the fast path
def test_predict_with_the_executorch_backend_writes_torchs_files(detector, tmp_path, capsys):
    _, checkpoint, path = detector
    image = tmp_path / "photos" / "wide.png"
    image.parent.mkdir()
    Image.fromarray(textured_image(50, 130)).save(image)
    documents = {}
    for backend, extra in (("torch", []), ("executorch", ["--model", str(path)])):
        out = tmp_path / backend
        source = str(checkpoint) if backend == "torch" else "-"
        predict_tool.main(
            [DETECTOR, source, str(image.parent), "--out-dir", str(out), "--backend", backend,
             *extra, "--score-thr", "0.5"]
        )  # fmt: skip
        documents[backend] = json.loads((out / "photos" / "wide.json").read_text())
    capsys.readouterr()
    torch_doc, pte_doc = documents["torch"], documents["executorch"]
    assert list(pte_doc) == list(torch_doc)
    assert len(pte_doc["boxes"]) == len(torch_doc["boxes"]) > 0
    assert pte_doc["labels"] == torch_doc["labels"]
    np.testing.assert_allclose(pte_doc["boxes"], torch_doc["boxes"], atol=5e-3)
    np.testing.assert_allclose(pte_doc["scores"], torch_doc["scores"], atol=1e-4)


# ------------------------------------------------------------------ segmenter, multi-task


@pytest.mark.slow  # one more lowering (20-70 s each); the classifier fixture covers the fast path
def test_segmenter_logits_and_class_map(tmp_path):
    torch.manual_seed(0)
    model = randomize_batch_norms_(
        mtvision.create_model("deeplabv3_mobilenet_v2", num_classes=5, width_mult=0.35),
        seed=3,
        input_size=64,
    ).eval()
    path = export_deploy_executorch(model, tmp_path / "seg.pte", (64, 80), class_map=True)
    metadata = read_deploy_metadata(path)
    assert metadata["output_names"] == ["mask"]
    images = _images(2, (64, 80))
    raw = DeployedModel(path).session.run(images.permute(0, 2, 3, 1).numpy())
    assert raw["mask"].shape == (2, 64, 80) and raw["mask"].dtype == np.uint8
    actual = DeployedModel(path).run(images)["segmentation"]
    expected = DeployModel(model).eval().outputs(images)["segmentation"]
    assert len(expected["mask"].unique()) > 1
    assert head_agreement("segmentation", expected, actual) >= 0.999


@pytest.mark.slow  # one more lowering (20-70 s each); the classifier fixture covers the fast path
def test_multitask_outputs_by_head(tmp_path):
    torch.manual_seed(0)
    model = mtvision.create_model(
        "mobilenet_v2_multitask",
        num_classes=dict(classification=5, detection=3, segmentation=4),
        width_mult=0.35,
    )
    model = randomize_batch_norms_(model, seed=5, input_size=96).eval()
    path = export_deploy_executorch(model, tmp_path / "mt.pte", (96, 96))
    assert read_deploy_metadata(path)["output_names"] == [
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


# ------------------------------------------------------------------ bad input


def test_missing_corrupt_and_metadata_free_files_are_named(tmp_path):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with pytest.raises(ExportError, match=r"missing.pte: no such ExecuTorch file"):
        read_deploy_metadata(tmp_path / "missing.pte")
    corrupt = tmp_path / "corrupt.pte"
    corrupt.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(ExportError, match=r"corrupt.pte: not a readable ExecuTorch program"):
        read_deploy_metadata(corrupt)
    plain = torch.export.export(torch.nn.Conv2d(3, 2, 1).eval(), (torch.randn(1, 3, 4, 4),))
    bare = tmp_path / "bare.pte"
    lowered = to_edge_transform_and_lower(plain, partitioner=[XnnpackPartitioner()])
    bare.write_bytes(lowered.to_executorch().buffer)
    with pytest.raises(ExportError, match=r"bare.pte: no 'mtvision' metadata"):
        DeployedModel(bare)


def test_bad_size_and_calibration_images_are_refused_before_lowering(tmp_path):
    model = mtvision.create_model("mobilenet_v2_035", num_classes=3)
    with pytest.raises(ExportError, match=r"x.pte: an ExecuTorch program has a fixed input size"):
        export_deploy_executorch(model, tmp_path / "x.pte", None)
    with pytest.raises(ExportError, match=r"calibration image 0 is torch.uint8 \(3, 16, 16\)"):
        export_deploy_executorch(
            model, tmp_path / "x.pte", (32, 32), calibration_images=[_images(1, (16, 16))[0]]
        )
    assert not (tmp_path / "x.pte").exists()


def test_missing_executorch_is_an_install_hint(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "executorch.exir", None)
    model = mtvision.create_model("mobilenet_v2_035", num_classes=3)
    with pytest.raises(
        ExportError,
        match=r"x.pte: ExecuTorch is not installed \(pip install -e '\.\[executorch\]'\)",
    ):
        export_deploy_executorch(model, tmp_path / "x.pte", (32, 32))


# ------------------------------------------------------------------ real weights, real photos

CORAL = "coral_mobilenetv2_tflite"
VOC = "voc2012_seg_samples_vainf/VOCdevkit/VOC2012"
CLASSIFIER_CONFIG = "configs/pretrained/mobilenetv2_tflite_imagenet.py"
DEEPLAB_CONFIG = "configs/pretrained/deeplabv3_tflite_voc.py"


def _converted_model(realdata, tmp_path, tflite: str, config: str):
    """tools/convert_weights.py --config on Google's file, built from the checkpoint."""
    from mtvision.engine import load_config
    from mtvision.engine.model_source import ModelSource

    checkpoint = tmp_path / f"{tflite}.pth"
    load_tool("convert_weights").main(
        [str(realdata / CORAL / "models" / f"{tflite}.tflite"), "--out", str(checkpoint)]
        + ["--config", config]
    )
    return ModelSource(load_config(config), str(checkpoint)).build_model().eval()


class _Litert:
    """Google's .tflite file in ai_edge_litert (one thread): uint8 (H, W, 3) -> output."""

    def __init__(self, path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(image)[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0]


def _latencies_ms(runs: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds per call of each ``name: function()``, rotated call by call so
    that both see the same machine load."""
    import statistics
    import time

    for function in runs.values():
        function()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, function in runs.items():
            start = time.perf_counter()
            function()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


@pytest.mark.slow
def test_converted_google_classifier_float_and_int8_pte(realdata, tmp_path):
    """Float .pte top-1 = torch on the 14 photos; int8 .pte (calibrated on 106 held-out
    real photos, never the 14) top-1 = Google's int8 file's on at least 13 (measured
    14/14; 12/14 on the old 28 photos alone); 1-thread latency printed."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    model = _converted_model(realdata, tmp_path, "mobilenet_v2_1.0_224_quant", CLASSIFIER_CONFIG)
    photos = sorted(p for p in (realdata / CORAL / "images").iterdir() if "_mask" not in p.name)
    assert len(photos) == 14
    images = torch.stack(pipeline_images(CLASSIFIER_CONFIG, photos, tmp_path / "photos"))
    calibration = pipeline_images(
        CLASSIFIER_CONFIG, classifier_calibration_photos(realdata), tmp_path / "calibration"
    )
    float_file = export_deploy_executorch(model, tmp_path / "cls.pte", (224, 224))
    int8_file = export_deploy_executorch(
        model, tmp_path / "cls.int8.pte", (224, 224), calibration_images=calibration
    )
    with torch.no_grad():
        torch_top1 = DeployModel(model).eval().outputs(images)["classification"]["labels"][:, 0]
    top1 = {
        name: DeployedModel(file).run(images)["classification"]["labels"][:, 0]
        for name, file in (("float", float_file), ("int8", int8_file))
    }
    google = _Litert(realdata / CORAL / "models" / "mobilenet_v2_1.0_224_quant.tflite")
    nhwc = images.permute(0, 2, 3, 1).numpy()
    google_top1 = torch.tensor([int(google(image).argmax()) - 1 for image in nhwc])  # 0: background
    float_equal = int((top1["float"] == torch_top1).sum())
    int8_equal = int((top1["int8"] == google_top1).sum())
    _unsafe_reset_threadpool(1)
    session = DeployedModel(int8_file).session
    latency = _latencies_ms(
        {
            "int8 .pte": lambda: session.run(nhwc[:1]),
            "Google int8 .tflite": lambda: google(nhwc[0]),
        },
        repeats=30,
    )
    print(
        f"classifier: float .pte top-1 = torch {float_equal}/14; int8 .pte top-1 = Google's "
        f"int8 file {int8_equal}/14 (int8 .pte = torch {int((top1['int8'] == torch_top1).sum())}"
        f"/14); 1 thread: {', '.join(f'{k} {v:.2f} ms' for k, v in latency.items())}"
    )
    assert float_equal == 14
    assert int8_equal >= 13


@pytest.mark.slow
def test_converted_google_deeplab_float_and_int8_pte(realdata, tmp_path):
    """Float .pte class maps = torch's (pixel agreement >= 0.999) on the 14 VOC crops;
    int8 .pte (calibrated on 16 held-out real photos, never the crops) mIoU (tools/eval.py)
    within 0.005 of Google's int8 file (measured 0.8240 vs 0.8265); latency printed."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    from mtvision.evaluation.miou_metric import confusion_matrix, scores_from_confusion

    model = _converted_model(realdata, tmp_path, "deeplabv3_mnv2_pascal_quant", DEEPLAB_CONFIG)
    calibration = resized_images(segmentation_calibration_photos(realdata, 16), 513)
    float_file = export_deploy_executorch(model, tmp_path / "seg.pte", (513, 513))
    int8_file = export_deploy_executorch(
        model, tmp_path / "seg.int8.pte", (513, 513), calibration_images=calibration
    )
    voc = realdata / VOC
    ids = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(ids) == 14
    crops = [np.asarray(Image.open(voc / "JPEGImages" / f"{i}.jpg").convert("RGB")) for i in ids]
    deployed = DeployedModel(float_file)
    torch_graph = DeployModel(model).eval()
    agreements = []
    for crop in crops:
        batch = torch.from_numpy(crop).permute(2, 0, 1)[None]
        with torch.no_grad():
            want = torch_graph.outputs(batch)["segmentation"]["mask"]
        got = deployed.run(batch)["segmentation"]["mask"]
        agreements.append(float((want == got).float().mean()))
    miou = {}
    for name, file in (("float", float_file), ("int8", int8_file)):
        metrics = eval_tool.main(
            [DEEPLAB_CONFIG, str(file), "--work-dir", str(tmp_path / name), "--cfg-options"]
            + [f"test_dataloader.dataset.data_root={voc}", "test_dataloader.num_workers=0"]
            + ["test_dataloader.persistent_workers=False"]
        )
        miou[name] = metrics["seg/mIoU"]
    google = _Litert(realdata / CORAL / "models" / "deeplabv3_mnv2_pascal_quant.tflite")
    matrix = torch.zeros(21, 21, dtype=torch.int64)
    for i, crop in zip(ids, crops, strict=True):
        prediction = torch.from_numpy(google(crop).astype(np.int64))
        mask = np.asarray(Image.open(voc / "SegmentationClass" / f"{i}.png")).astype(np.int64)
        matrix += confusion_matrix(prediction, torch.from_numpy(mask), 21)
    google_miou = scores_from_confusion(matrix.numpy())["mIoU"]
    _unsafe_reset_threadpool(1)
    session = DeployedModel(int8_file).session
    first = np.ascontiguousarray(crops[0][None])
    latency = _latencies_ms(
        {"int8 .pte": lambda: session.run(first), "Google int8 .tflite": lambda: google(crops[0])},
        repeats=10,
    )
    print(
        f"DeepLabv3 513: float .pte pixel agreement with torch min {min(agreements):.5f}; "
        f"mIoU float .pte {miou['float']:.4f}, int8 .pte {miou['int8']:.4f}, Google's int8 "
        f"file {google_miou:.4f}; 1 thread: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items())
    )
    assert min(agreements) >= 0.999
    assert abs(miou["int8"] - google_miou) <= 0.005


class _Erfinv(torch.nn.Module):
    """An op ExecuTorch has no kernel for and XNNPACK does not take."""

    def forward(self, x):
        return torch.erfinv(x.clamp(-0.5, 0.5))


def test_an_op_without_a_kernel_is_named_with_its_module(tmp_path):
    model = mtvision.create_model("mobilenet_v2_035", num_classes=3)
    model.heads["classification"].dropout = _Erfinv()
    with pytest.raises(ExportError) as error:
        export_deploy_executorch(model, tmp_path / "x.pte", (32, 32))
    assert str(error.value) == (
        f"{tmp_path / 'x.pte'}: the op aten::erfinv in heads.classification.dropout has no "
        "ExecuTorch kernel and XNNPACK does not take it; the model cannot run in ExecuTorch"
    )
    assert not (tmp_path / "x.pte").exists()
