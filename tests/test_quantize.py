"""INT8 quantisation (mtvision/export/quantize.py, tools/quantize.py) on tiny graphs.

A tiny uint8-input network with a classification tail (softmax, top-k) and a
segmentation tail (logits resized to the input, argmax) is exported to ONNX,
quantised with onnxruntime, and checked: QDQ with per-channel weight scales on
every convolution, the tails float, outputs close to float, metadata kept. The
real-data accuracy goals (converted MobileNetV2 and DeepLabv3) are the slow test
at the end.
"""

import errno
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from engine_toy import load_tool
from onnx import numpy_helper
from realdata_calibration import (
    classifier_calibration_photos,
    photo_folder,
    resized_images,
    segmentation_calibration_photos,
)
from torch import nn

from mtvision.engine.cli import run_cli
from mtvision.errors import ExportError, OutputError
from mtvision.export import export_onnx
from mtvision.export.quantize import (
    QUANTIZATION_METADATA_KEY,
    QuantizationSettings,
    UInt8ImageReader,
    graph_input,
    postprocessing_nodes,
    quantize_onnx,
)
from mtvision.export.sample_images import calibration_batches, calibration_datasets, draw_samples

quantize_tool = load_tool("quantize")
SIZE = 32


class TinyDeployed(nn.Module):
    """uint8 (N, 3, 32, 32) -> normalise -> TF "SAME" pad (0 before, 1 after) + conv 3x3
    s2 + BN + ReLU6 -> inverted residual
    (1x1 expand, depthwise 3x3, 1x1 project, + input) -> two tails: global pool -> Linear
    -> softmax -> top-3 (``scores``, ``labels``); 1x1 conv logits -> bilinear resize to
    the input -> argmax (``mask``, uint8)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 0, bias=False), nn.BatchNorm2d(16))
        self.expand = nn.Conv2d(16, 32, 1)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.project = nn.Conv2d(32, 16, 1)
        self.fc = nn.Linear(16, classes)
        self.seg = nn.Conv2d(16, classes, 1)
        with torch.no_grad():  # non-trivial BN statistics, margins between classes
            self.stem[1].running_mean.uniform_(-0.5, 0.5)
            self.stem[1].running_var.uniform_(0.5, 2.0)
            self.fc.weight.mul_(8)
            self.seg.weight.mul_(4)

    def forward(self, images):
        x = (images.float() - 127.5) / 127.5
        x = F.relu6(self.stem(F.pad(x, (0, 1, 0, 1))))
        x = x + self.project(F.relu6(self.depthwise(F.relu6(self.expand(x)))))
        scores, labels = self.fc(x.mean((2, 3))).softmax(1).topk(3, dim=1)
        logits = F.interpolate(self.seg(x), size=images.shape[-2:], mode="bilinear")
        return {"scores": scores, "labels": labels, "mask": logits.argmax(1).to(torch.uint8)}


def _images(count: int, seed: int) -> np.ndarray:
    """Smooth colour fields (a 4x4 random grid upsampled): more like photos than noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 255
    return F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear").round().byte().numpy()


METADATA = {"format": 1, "input_name": "input", "input_size": [SIZE, SIZE], "heads": {}}


@pytest.fixture(scope="module")
def float_graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("quantize") / "tiny.onnx"
    export_onnx(TinyDeployed().eval(), path, (1, 3, SIZE, SIZE), input_dtype=torch.uint8)
    model = onnx.load(path)
    model.metadata_props.add(key="mtvision", value=json.dumps(METADATA))
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def int8_graph(float_graph):
    target = float_graph.with_name("tiny.int8.onnx")
    counted = []
    batches = [_images(8, seed) for seed in range(4)]
    record = quantize_onnx(float_graph, target, batches, on_batch=counted.append)
    assert counted == [8, 8, 8, 8]
    return target, record


def _run(path, images) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": images}), strict=True))


def test_convolutions_are_qdq_with_per_channel_weight_scales(int8_graph):
    path, record = int8_graph
    model = onnx.load(path)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {output: node for node in model.graph.node for output in node.output}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert len(convs) == 5
    quantized = {}
    for conv in convs:
        activation, weight = (producer.get(name) for name in conv.input[:2])
        if weight is None:  # a float weight initializer
            continue
        assert weight.op_type == activation.op_type == "DequantizeLinear"
        weight_int8 = initializers[weight.input[0]]
        scales = initializers[weight.input[1]]
        assert weight_int8.dtype == np.int8
        assert scales.shape == (weight_int8.shape[0],)  # one scale per output channel
        assert len(set(scales.tolist())) > 1
        # The activation: uint8 with a calibrated scale.
        assert initializers[activation.input[2]].dtype == np.uint8
        quantized[conv.name] = weight_int8.shape[0]
    # Every convolution but the last compute layer (the seg logits) is int8.
    assert len(quantized) == 4
    assert record["float_nodes"] == ["/model/seg/Conv", "/model/fc/Gemm"]
    assert record["calibration_images"] == 32 and record["per_channel"] is True


def test_same_padding_is_folded_into_the_convolution(float_graph, int8_graph):
    path, record = int8_graph
    assert [n.op_type for n in onnx.load(float_graph).graph.node].count("Pad") == 1
    model = onnx.load(path)
    assert "Pad" not in [node.op_type for node in model.graph.node]
    stem = next(node for node in model.graph.node if node.op_type == "Conv")
    assert [list(a.ints) for a in stem.attribute if a.name == "pads"] == [[0, 0, 1, 1]]
    assert record["folded_pads"] == 1


def test_postprocessing_stays_float(float_graph, int8_graph):
    path, record = int8_graph
    tails = postprocessing_nodes(onnx.load(float_graph))
    tail_ops = {name.rsplit("/", 1)[-1].split("_")[0] for name in tails}
    assert {"Softmax", "TopK", "Resize", "ArgMax", "Cast"} <= tail_ops
    assert not tail_ops & {"Conv", "Gemm"}
    model = onnx.load(path)
    producer = {output: node for node in model.graph.node for output in node.output}
    for node in model.graph.node:
        if node.op_type in ("Softmax", "TopK", "Resize", "ArgMax", "Gemm"):
            # Fed by float ops, never by a DequantizeLinear.
            assert producer[node.input[0]].op_type != "DequantizeLinear", node.name
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    weights = {t.name: t for t in model.graph.initializer}
    assert weights[gemm.input[1]].data_type == onnx.TensorProto.FLOAT
    # Counted after onnxruntime's pre-processing folded the constants away.
    assert 0 < record["postprocessing_nodes"] <= len(tails)


def test_int8_outputs_agree_with_float(float_graph, int8_graph):
    """On 32 images not used for calibration: top-1 equal on >= 30, softmax scores
    within 0.05, argmax masks equal on >= 95 % of pixels."""
    images = _images(32, seed=100)
    want, got = _run(float_graph, images), _run(int8_graph[0], images)
    agree = (want["labels"][:, 0] == got["labels"][:, 0]).mean()
    score_diff = np.abs(np.sort(want["scores"], 1) - np.sort(got["scores"], 1)).max()
    pixels = (want["mask"] == got["mask"]).mean()
    print(f"top-1 agreement {agree:.3f}, max score diff {score_diff:.4f}, mask {pixels:.4f}")
    assert agree >= 30 / 32
    assert score_diff < 0.05
    assert pixels >= 0.95
    assert got["mask"].dtype == np.uint8 and got["scores"].dtype == np.float32


def test_metadata_is_kept_and_the_record_added(float_graph, int8_graph):
    path, _ = int8_graph
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    source = {p.key: p.value for p in onnx.load(float_graph).metadata_props}
    assert props["mtvision"] == source["mtvision"]
    record = json.loads(props[QUANTIZATION_METADATA_KEY])
    assert record["calibration_images"] == 32
    assert record["method"] == "minmax" and record["activation_type"] == "uint8"


def test_settings_per_tensor_and_entropy(float_graph, tmp_path):
    target = tmp_path / "per_tensor.int8.onnx"
    settings = QuantizationSettings(per_channel=False, method="entropy", float_last_layers=False)
    record = quantize_onnx(float_graph, target, [_images(4, 7)], settings)
    model = onnx.load(target)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weight_scales = [
        initializers[node.input[1]]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and initializers.get(node.input[0]) is not None
        and initializers[node.input[0]].dtype == np.int8
    ]
    assert len(weight_scales) == 6 and all(s.ndim == 0 for s in weight_scales)  # + the Gemm
    assert record["float_nodes"] == [] and record["method"] == "entropy"
    with pytest.raises(ValueError, match="method must be one of"):
        QuantizationSettings(method="kl")


def test_bad_calibration_input_is_refused(float_graph, tmp_path):
    with pytest.raises(ValueError, match=r"calibration batch 1: expected uint8 \(N, 3, H, W\)"):
        quantize_onnx(
            float_graph,
            tmp_path / "x.onnx",
            [_images(2, 0), _images(2, 1).astype(np.float32)],
        )
    with pytest.raises(ValueError, match="no calibration images"):
        quantize_onnx(float_graph, tmp_path / "x.onnx", [])
    assert list(tmp_path.iterdir()) == []  # nothing written
    reader = UInt8ImageReader([torch.zeros(1, 3, 8, 8, dtype=torch.uint8)], "input")
    assert reader.get_next()["input"].shape == (1, 3, 8, 8) and reader.get_next() is None


def test_deployed_multitask_graph_keeps_every_head_tail_float(tmp_path):
    """The multi-task demo model (random weights, BN statistics set) deployed at 96 px:
    top-k, box decoding, NonMaxSuppression, the logits' resize and argmax stay float,
    every convolution but the heads' last ones is int8, and all outputs keep their
    names and types."""
    from mmengine.registry import init_default_scope

    from mtvision.engine import load_config
    from mtvision.export import export_deploy_onnx
    from mtvision.registry import MODELS
    from mtvision.utils.parity import randomize_batch_norms_

    cfg = load_config("configs/demo/multitask_shapes.py")
    init_default_scope("mtvision")
    model = randomize_batch_norms_(MODELS.build(cfg.model), seed=1, input_size=96).eval()
    source = export_deploy_onnx(model, tmp_path / "multitask.onnx", (96, 96))
    target = tmp_path / "multitask.int8.onnx"
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(4, 3, 6, 6, generator=generator) * 255
    images = F.interpolate(coarse, size=(96, 96), mode="bilinear").round().byte().numpy()
    record = quantize_onnx(source, target, [images[:2], images[2:]])

    quantized = onnx.load(target)
    producer = {out: node for node in quantized.graph.node for out in node.output}
    tails = ("TopK", "Softmax", "NonMaxSuppression", "Exp", "Resize", "ArgMax")
    tail_nodes = [node for node in quantized.graph.node if node.op_type in tails]
    assert {node.op_type for node in tail_nodes} == set(tails)
    for node in tail_nodes:
        if "/aspp/" in node.name:
            continue  # the image pooling's resize of its 1x1 map: a constant, int8 is exact
        feeding = [producer[name].op_type for name in node.input if name in producer]
        assert "DequantizeLinear" not in feeding, node.name
    int8_convs = sum(
        node.op_type == "Conv" and producer.get(node.input[1], node).op_type == "DequantizeLinear"
        for node in quantized.graph.node
    )
    convs = sum(node.op_type == "Conv" for node in quantized.graph.node)
    # The float ones: 6 class + 6 box predictors' last convolutions and the seg logits.
    assert convs - int8_convs == 13 == len(record["float_nodes"]) - 1  # + the fc Gemm
    want = _run_images(source, images)
    got = _run_images(target, images)
    assert list(want) == list(got)
    assert all(want[name].dtype == got[name].dtype for name in want)


def _run_images(path, images) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": images}), strict=True))


# ------------------------------------------------------------------ tools/quantize.py


def _shapes_options(root) -> list[str]:
    return [f"test_dataloader.dataset.data_root={root / 'imagenet'}"]


def _tool_graph(tmp_path, size: int, dynamic: bool = False):
    """The tiny network as a deployed graph of ``size`` (``input_size`` null when dynamic)."""
    path = tmp_path / "graph.onnx"
    export_onnx(TinyDeployed().eval(), path, (1, 3, size, size), input_dtype=torch.uint8)
    model = onnx.load(path)
    metadata = {**METADATA, "input_size": None if dynamic else [size, size]}
    model.metadata_props.add(key="mtvision", value=json.dumps(metadata))
    onnx.save(model, path)
    return path


def test_tool_warns_with_fewer_images_than_asked(tiny_shapes, tmp_path, capsys):
    graph = _tool_graph(tmp_path, 64)
    out = tmp_path / "graph.int8.onnx"
    config = "configs/demo/mobilenetv2_shapes.py"
    record = quantize_tool.main(
        [config, str(graph), "--out", str(out), "--calib", "10", "--cfg-options"]
        + _shapes_options(tiny_shapes)
    )
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: the test dataset ImageNetFolder at {tiny_shapes / 'imagenet'} has 6 images, "
        "fewer than --calib 10; calibrating on all 6"
    ]
    assert "calibration: 100%" in err and "6/6" in err  # the progress bar
    assert record["calibration_images"] == 6
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(props[QUANTIZATION_METADATA_KEY])["calibration_images"] == 6


def test_tool_draws_without_replacement_by_seed():
    picks = draw_samples([5, 3], 6, seed=1)
    assert len(set(picks)) == 6
    assert picks == draw_samples([5, 3], 6, seed=1)
    assert picks != draw_samples([5, 3], 6, seed=2)
    assert all(p < (5 if d == 0 else 3) for d, p in picks)
    assert sorted(draw_samples([2, 1], 9, seed=0)) == [(0, 0), (0, 1), (1, 0)]


def test_tool_multitask_entries_and_dynamic_size(tiny_shapes, tmp_path, capsys):
    """A multi-task config draws from its test entries; a dynamic graph (input_size null)
    is calibrated one image at a time at the pipeline's size."""
    graph = _tool_graph(tmp_path, 64, dynamic=True)
    assert graph_input(str(graph)) == (None, None)
    parts = "test_dataloader.shapes.dataset.datasets"
    options = [
        f"{parts}.detection.data_root={tiny_shapes / 'coco'}",
        f"{parts}.classification.data_root={tiny_shapes / 'imagenet'}",
        f"{parts}.segmentation.data_root={tiny_shapes / 'VOCdevkit/VOC2012'}",
    ]
    from mtvision.engine import load_config

    cfg = load_config("configs/demo/multitask_shapes.py", dict(o.split("=") for o in options))
    ((name, dataset),) = calibration_datasets(cfg)
    assert name == "test entry 'shapes' (JoinedDataset)" and len(dataset) == 6
    resized = []
    batches = list(calibration_batches([dataset], [(0, 1), (0, 4)], None, 8, resized))
    assert [tuple(b.shape) for b in batches] == [(1, 3, 160, 160)] * 2 and resized == []
    # A fixed 64 graph: the pipeline's 160 images are resized to it, and said so.
    out = tmp_path / "mt.int8.onnx"
    record = quantize_tool.main(
        ["configs/demo/multitask_shapes.py", str(_tool_graph(tmp_path, 64)), "--out", str(out)]
        + ["--calib", "3", "--per-tensor", "--int8-last-layers", "--no-fold-pads"]
        + ["--cfg-options", *options]
    )
    assert record["float_nodes"] == [] and record["folded_pads"] == 0
    assert record["per_channel"] is False
    err = capsys.readouterr().err
    assert "note: 3 of 3 calibration images were resized from the test pipeline's size " in err
    assert "(e.g. 160x160) to the graph's 64x64" in err


def test_tool_errors_are_one_line(tiny_shapes, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "val" / "a").mkdir(parents=True)
    graph = _tool_graph(tmp_path, 64)
    float_input = tmp_path / "float.onnx"
    export_onnx(nn.Conv2d(3, 4, 3), float_input, (1, 3, 8, 8))
    not_onnx = tmp_path / "text.onnx"
    not_onnx.write_text("hello")
    config = "configs/demo/mobilenetv2_shapes.py"
    cases = [
        (
            [str(graph), "--cfg-options", f"test_dataloader.dataset.data_root={empty}"]
            + ["test_dataloader.dataset.on_empty_class=skip"],
            f"error: {config}: the test dataset ImageNetFolder at {empty} has no images to "
            "calibrate on",
        ),
        (
            [str(float_input)],
            f"error: {float_input}: expected one uint8 (N, 3, H, W) image input (a deployed "
            "graph, tools/export_onnx.py), got inputs ['input float']",
        ),
        ([str(not_onnx)], f"error: {not_onnx}: not a readable ONNX model"),
        ([str(tmp_path / "missing.onnx")], "error: "),
    ]
    for arguments, message in cases:
        argv = [config, arguments[0], "--out", str(tmp_path / "o.onnx"), "--calib", "2"]
        with pytest.raises(SystemExit) as exit_info:
            run_cli(lambda argv=argv + arguments[1:]: quantize_tool.main(argv))
        assert exit_info.value.code == 2
        # (mmengine's logger may add its own lines, e.g. the empty class folder.)
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith(message), errors
    assert not (tmp_path / "o.onnx").exists()


def test_an_int8_file_is_refused_before_calibration(float_graph, int8_graph, tmp_path, capsys):
    """The tool's own int8 output (its metadata says what it is), or any graph with Q/DQ
    nodes, is refused in one line naming the float file; no calibration, nothing written
    (the config's test data does not even exist here)."""
    int8_path, _ = int8_graph
    out = tmp_path / "twice.int8.onnx"
    argv = ["configs/demo/mobilenetv2_shapes.py", str(int8_path), "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: quantize_tool.main([*argv, "--calib", "2"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {int8_path} is already quantised (minmax, 32 images); quantise the float "
        f"file it came from, {float_graph}\n"
    )
    with pytest.raises(ExportError, match="already quantised"):
        quantize_onnx(int8_path, out, [_images(2, 0)])  # the Python API refuses too
    # Without the record (a Q/DQ graph from elsewhere), its nodes say it.
    foreign = onnx.load(int8_path)
    del foreign.metadata_props[:]
    onnx.save(foreign, tmp_path / "foreign.int8.onnx")
    with pytest.raises(ExportError) as error:
        graph_input(tmp_path / "foreign.int8.onnx")
    assert str(error.value) == (
        f"{tmp_path / 'foreign.int8.onnx'} is already quantised (it has "
        "DequantizeLinear/QuantizeLinear nodes); quantise the float file it came from"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.int8.onnx"]


def test_int8_file_replaces_the_target_only_once_written_whole(float_graph, tmp_path, monkeypatch):
    """A full disk while the int8 file is written: one error naming --out, the previous
    file intact, no temporary file left."""
    import os

    target = tmp_path / "tiny.int8.onnx"
    target.write_bytes(b"previous int8 file")
    real_replace = os.replace

    def disk_full(source, destination):
        if str(destination) == str(target):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OutputError) as error:
        quantize_onnx(float_graph, target, [_images(2, 0)])
    assert str(error.value) == (
        f"cannot write {target}: the disk is full (no space left on device); the previous "
        f"{target} is unchanged"
    )
    assert target.read_bytes() == b"previous int8 file"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.int8.onnx"]


# ------------------------------------------------------------------ real weights, real photos

CORAL = "coral_mobilenetv2_tflite"
VOC = "voc2012_seg_samples_vainf/VOCdevkit/VOC2012"
CLASSIFIER_CONFIG = "configs/pretrained/mobilenetv2_tflite_imagenet.py"
DEEPLAB_CONFIG = "configs/pretrained/deeplabv3_tflite_voc.py"


def _deployed(realdata, tmp_path, tflite: str, config: str, size) -> str:
    """tools/convert_weights.py --config, then the deployed graph at ``size``."""
    from mtvision.engine import load_config
    from mtvision.engine.model_source import ModelSource
    from mtvision.export import export_deploy_onnx

    checkpoint = tmp_path / f"{tflite}.pth"
    load_tool("convert_weights").main(
        [str(realdata / CORAL / "models" / f"{tflite}.tflite"), "--out", str(checkpoint)]
        + ["--config", config]
    )
    model = ModelSource(load_config(config), str(checkpoint)).build_model()
    return export_deploy_onnx(model, tmp_path / f"{tflite}.onnx", size)


@pytest.mark.slow
def test_converted_models_int8_meet_the_accuracy_goals(realdata, tmp_path):
    """The converted MobileNetV2 (uint8 TF1 file) and DeepLabv3 int8 against float:
    top-1 agreement >= 95 % on the 14 classification photos, and at most 1.0 mIoU point
    lost on the 14 VOC crops (tools/eval.py --backend onnxruntime). Both are calibrated
    on held-out real photos, never on the evaluated ones (tests/realdata_calibration.py:
    the classifier on 106, DeepLab on 16)."""
    held_out = classifier_calibration_photos(realdata)
    calibration = photo_folder(tmp_path / "calibration", held_out)
    photos = sorted(p for p in (realdata / CORAL / "images").iterdir() if "_mask" not in p.name)
    assert len(photos) == 14
    evaluation = photo_folder(tmp_path / "photos", photos)

    # Classifier: the tool, calibrated through the config's test pipeline (224 crops).
    float_cls = _deployed(
        realdata, tmp_path, "mobilenet_v2_1.0_224_quant", CLASSIFIER_CONFIG, (224, 224)
    )
    int8_cls = str(tmp_path / "classifier.int8.onnx")
    record = quantize_tool.main(
        [CLASSIFIER_CONFIG, float_cls, "--out", int8_cls, "--calib", "106", "--cfg-options"]
        + [f"test_dataloader.dataset.data_root={calibration}"]
    )
    assert record["calibration_images"] == 106
    from mtvision.engine import load_config

    cfg = load_config(CLASSIFIER_CONFIG, {"test_dataloader.dataset.data_root": evaluation})
    ((_, dataset),) = calibration_datasets(cfg)
    images = np.stack([dataset[i]["inputs"].numpy() for i in range(len(dataset))])
    sessions = [
        ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (float_cls, int8_cls)
    ]
    (want, _), (got, _) = (s.run(["labels", "scores"], {"images": images}) for s in sessions)
    agreement = float((want[:, 0] == got[:, 0]).mean())

    # DeepLab at 513: calibrated on the held-out photos at the graph's size.
    float_seg = _deployed(
        realdata, tmp_path, "deeplabv3_mnv2_pascal_quant", DEEPLAB_CONFIG, (513, 513)
    )
    int8_seg = tmp_path / "deeplab.int8.onnx"
    calibration_crops = resized_images(segmentation_calibration_photos(realdata, 16), 513)
    quantize_onnx(float_seg, int8_seg, (image[None].numpy() for image in calibration_crops))
    eval_tool = load_tool("eval")
    miou = {}
    for name, path in (("float", float_seg), ("int8", str(int8_seg))):
        metrics = eval_tool.main(
            [DEEPLAB_CONFIG, path, "--backend", "onnxruntime", "--work-dir", str(tmp_path / name)]
            + ["--cfg-options", f"test_dataloader.dataset.data_root={realdata / VOC}"]
            + ["test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False"]
        )
        miou[name] = metrics["seg/mIoU"]
    print(
        f"classifier top-1 int8 vs float: {agreement * 14:.0f}/14; DeepLab mIoU float "
        f"{miou['float']:.4f}, int8 {miou['int8']:.4f}"
    )
    assert agreement >= 0.95
    assert miou["float"] > 0.8  # the converted weights (EXPECTED.md: 0.827 in TFLite)
    assert miou["float"] - miou["int8"] <= 0.01
