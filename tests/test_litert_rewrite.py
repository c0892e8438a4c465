"""The .tflite rewrites into LiteRT's single ops: the same outputs as the graphs the
converter and the quantiser wrote, in fewer ops (issue 19's speed row)."""

from collections import Counter

import numpy as np
import pytest
import torch

import mtvision
from mtvision.utils.parity import randomize_batch_norms_

pytest.importorskip(
    "litert_torch", reason="litert-torch is not installed (pip install -e '.[litert]')"
)
pytest.importorskip("ai_edge_quantizer", reason="ai-edge-quantizer is not installed")
pytest.importorskip(
    "ai_edge_litert.interpreter",
    reason="ai-edge-litert is not installed (pip install -e '.[litert]')",
)

from mtvision.export import litert_export, litert_quantize  # noqa: E402
from mtvision.export.litert_rewrite import (  # noqa: E402
    argmax_without_dequantize,
    fuse_legacy_resizes,
)

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")
SIZE = (64, 64)


def _interpreter(content):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(content), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _ops(content):
    return Counter(op["op_name"] for op in _interpreter(content)._get_ops_details())


def _outputs(content, images):
    interpreter = _interpreter(content)
    feed, fetch = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in images:
        interpreter.set_tensor(feed["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(fetch["index"])[0].copy())
    return np.stack(results)


def _images(count, seed=0):
    generator = np.random.default_rng(seed)
    return generator.integers(0, 256, (count, *SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def legacy_model():
    """A small DeepLabv3+ that resizes by TF1's legacy rule, as the converted MLPerf file."""
    torch.manual_seed(0)
    model = mtvision.create_model(
        "deeplabv3plus_mobilenet_v2", num_classes=5, width_mult=0.35, tf_legacy_resize=True
    )
    return randomize_batch_norms_(model, seed=3, input_size=64).eval()


def _as_converted(model, path, monkeypatch, class_map):
    """The file's bytes as litert-torch writes them (no rewrite), and as exported."""
    written = {}

    def keep(content):
        written["converted"] = bytes(content)
        return fuse_legacy_resizes(content)

    monkeypatch.setattr(litert_export, "fuse_legacy_resizes", keep)
    litert_export.export_deploy_tflite(model, path, SIZE, class_map=class_map)
    return written["converted"], path.read_bytes()


def test_legacy_resizes_become_one_op_with_the_same_logits(legacy_model, tmp_path, monkeypatch):
    converted, exported = _as_converted(legacy_model, tmp_path / "seg.tflite", monkeypatch, False)
    before, after = _ops(converted), _ops(exported)
    # The 4x upsampling to the low-level tap and the one to the input: pad + resize + 2 slices.
    assert before["MIRROR_PAD"] == 2 and before["SLICE"] == 4
    assert after["MIRROR_PAD"] == 0 and after["SLICE"] == 0
    assert after["RESIZE_BILINEAR"] == before["RESIZE_BILINEAR"]
    images = _images(3)
    logits = _outputs(exported, images)
    assert logits.shape == (3, *SIZE, 5)
    np.testing.assert_allclose(logits, _outputs(converted, images), rtol=0, atol=1e-4)
    # Against torch's legacy resize (pad + corner-aligned resize + crop).
    with torch.no_grad():
        expected = litert_export.DeployModel(legacy_model, phone=True, channels_last=True)
        expected = expected.outputs(torch.from_numpy(images))["segmentation"]["class_logits"]
    np.testing.assert_allclose(logits, expected.numpy(), rtol=0, atol=1e-3)


@pytest.mark.slow  # another conversion (~15 s); the resize fusion stays in the default run
def test_a_graph_without_the_pattern_comes_back_as_it_is(tmp_path):
    torch.manual_seed(0)
    model = mtvision.create_model("deeplabv3_mobilenet_v2", num_classes=5, width_mult=0.35)
    path = litert_export.export_deploy_tflite(model.eval(), tmp_path / "v3.tflite", SIZE)
    content = open(path, "rb").read()
    assert fuse_legacy_resizes(content) is content
    assert argmax_without_dequantize(content) is content


@pytest.mark.slow  # another conversion (~15 s); the resize fusion stays in the default run
def test_int8_argmax_reads_the_int8_logits_with_the_same_class_map(
    legacy_model, tmp_path, monkeypatch
):
    source = litert_export.export_deploy_tflite(
        legacy_model, tmp_path / "seg.tflite", SIZE, class_map=True
    )
    quantized = {}

    def keep(content):
        quantized["bytes"] = bytes(content)
        return argmax_without_dequantize(content)

    monkeypatch.setattr(litert_quantize, "argmax_without_dequantize", keep)
    calibration = [torch.from_numpy(image).permute(2, 0, 1) for image in _images(4, seed=1)]
    litert_quantize.quantize_tflite(source, tmp_path / "seg.int8.tflite", calibration)
    rewritten = (tmp_path / "seg.int8.tflite").read_bytes()
    assert _ops(quantized["bytes"])["DEQUANTIZE"] == 1
    assert _ops(rewritten)["DEQUANTIZE"] == 0
    interpreter = _interpreter(rewritten)
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    (argmax,) = [op for op in interpreter._get_ops_details() if op["op_name"] == "ARG_MAX"]
    assert details[argmax["inputs"][0]]["dtype"] == np.int8
    # The channels-last argmax: no transpose of the full-size logits before it.
    assert _ops(rewritten)["TRANSPOSE"] == 0
    images = _images(4, seed=2)
    masks = _outputs(rewritten, images)
    assert len(np.unique(masks)) > 1
    np.testing.assert_array_equal(masks, _outputs(quantized["bytes"], images))
