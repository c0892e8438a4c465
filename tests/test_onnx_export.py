"""ONNX export: onnxruntime reproduces torch for the classifier and the backbone taps;
tools/export_onnx.py verifies before it replaces a file."""

import hashlib
import os

import onnx
import pytest
import torch
from engine_toy import load_tool
from mmengine.registry import init_default_scope
from torch import nn

import mtvision
from mtvision.backbones import MobileNetV2
from mtvision.engine import load_config
from mtvision.engine.cli import run_cli
from mtvision.export import check_onnx_matches, export_onnx, flatten_outputs, onnx_session
from mtvision.registry import MODELS
from mtvision.utils.parity import randomize_batch_norms_

DEMO_CONFIG = "configs/demo/mobilenetv2_shapes.py"
DEMO_SIZE = 64
export_tool = load_tool("export")


def _torch_outputs(model, inputs) -> list[torch.Tensor]:
    with torch.no_grad():
        return flatten_outputs(model(inputs))[1]


def _assert_matches(model, path, inputs):
    scale = max(float(t.abs().max()) for t in _torch_outputs(model, inputs))
    assert scale > 0.1, "outputs too small for a relative comparison to mean anything"
    assert check_onnx_matches(model, path, inputs) <= 1e-4 * scale


def test_classifier_matches_torch_with_dynamic_batch(tmp_path):
    # Weights from a fixed seed: the comparison must not depend on the tests run before.
    torch.manual_seed(0)
    model = randomize_batch_norms_(
        mtvision.create_model("mobilenet_v2_050", num_classes=6), seed=0, input_size=DEMO_SIZE
    ).train()
    path = export_onnx(model, tmp_path / "sub" / "classifier.onnx", (1, 3, DEMO_SIZE, DEMO_SIZE))

    graph = onnx.load(path).graph
    assert [o.name for o in graph.output] == ["classification.cls_logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.training  # exported in eval mode, then the mode it was in restored
    model.eval()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["classifier.onnx"]

    generator = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        inputs = torch.randn(batch, 3, DEMO_SIZE, DEMO_SIZE, generator=generator)
        _assert_matches(model, path, inputs)
        (logits,) = onnx_session(path).run(None, {"input": inputs.numpy()})
        assert logits.shape == (batch, 6)


def test_backbone_taps_become_named_outputs(tmp_path):
    taps = ("layer15_expansion", "final_conv")
    torch.manual_seed(0)  # as above: the weights must not depend on earlier tests
    backbone = randomize_batch_norms_(
        MobileNetV2(width_mult=0.5, out_features=taps), seed=2, input_size=DEMO_SIZE
    )
    backbone.train()  # export and comparison both run in eval mode regardless
    path = export_onnx(backbone, tmp_path / "backbone.onnx", (1, 3, DEMO_SIZE, DEMO_SIZE))
    assert backbone.training
    backbone.eval()  # a train-mode forward would update the BatchNorm statistics

    session = onnx_session(path)
    assert [o.name for o in session.get_outputs()] == list(taps)
    inputs = torch.randn(2, 3, DEMO_SIZE, DEMO_SIZE, generator=torch.Generator().manual_seed(3))
    outputs = session.run(None, {"input": inputs.numpy()})
    specs = {spec.name: spec for spec in backbone.feature_info}
    assert [o.shape for o in outputs] == [
        (2, specs[name].channels, DEMO_SIZE // specs[name].stride, DEMO_SIZE // specs[name].stride)
        for name in taps
    ]
    _assert_matches(backbone, path, inputs)


def test_static_batch_and_bad_forward(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    path = export_onnx(model, tmp_path / "static.onnx", (2, 3, 8, 8), dynamic_batch=False)
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 8, 8]

    class ListOutput(nn.Module):
        def forward(self, x):
            return [x]

    with pytest.raises(TypeError, match="a Tensor, a dict of Tensors or a dict of such dicts"):
        export_onnx(ListOutput(), tmp_path / "bad.onnx", (1, 3, 8, 8))
    assert not (tmp_path / "bad.onnx").exists()


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory):
    """The demo config's model with random weights, saved as an mmengine checkpoint."""
    cfg = load_config(DEMO_CONFIG)
    init_default_scope("mtvision")
    model = randomize_batch_norms_(MODELS.build(cfg.model), seed=4, input_size=DEMO_SIZE)
    path = tmp_path_factory.mktemp("checkpoint") / "demo.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    return path, model


def test_tool_bakes_the_data_preprocessor_into_the_graph(demo_checkpoint, tmp_path, capsys):
    checkpoint, model = demo_checkpoint
    out = tmp_path / "demo.onnx"
    size = ["--input-size", str(DEMO_SIZE), str(DEMO_SIZE)]
    max_diff = export_tool.main(
        [DEMO_CONFIG, str(checkpoint), "--out", str(out), "--raw", "--with-preprocess", *size]
    )
    assert "max abs diff" in capsys.readouterr().out
    assert max_diff < 1e-3

    # uint8 images through the ONNX file == the training path: preprocessor, then model.
    images = torch.randint(
        0,
        256,
        (3, 3, DEMO_SIZE, DEMO_SIZE),
        generator=torch.Generator().manual_seed(5),
        dtype=torch.uint8,
    )
    (onnx_logits,) = onnx_session(out).run(None, {"input": images.numpy()})
    with torch.no_grad():
        batch = model.data_preprocessor({"inputs": list(images), "data_samples": None})
        expected = model(batch["inputs"])["classification"]["cls_logits"]
    assert onnx_logits.shape == (3, 6)
    assert abs(onnx_logits - expected.numpy()).max() <= 1e-4 * float(expected.abs().max())


def test_tool_missing_checkpoint_names_the_file(tmp_path, capsys):
    missing = tmp_path / "no_such.pth"
    out = tmp_path / "never.onnx"
    argv = [DEMO_CONFIG, str(missing), "--out", str(out)]
    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        export_tool.main(argv)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: export_tool.main(argv))
    assert exit_info.value.code == 2
    assert str(missing) in capsys.readouterr().err
    assert not out.exists()


def test_tool_failed_check_keeps_the_previous_file(demo_checkpoint, tmp_path, capsys):
    """Verify-then-commit: an export the torch-vs-onnxruntime check rejects exits 2 and
    leaves the previous, accepted file byte for byte; nothing else is left behind."""
    checkpoint, _ = demo_checkpoint
    out = tmp_path / "demo.onnx"
    size = ["--input-size", str(DEMO_SIZE), str(DEMO_SIZE), "--check-images", "2"]
    argv = [DEMO_CONFIG, str(checkpoint), "--out", str(out), *size]
    assert export_tool.main(argv) == {"classification": 1.0}
    accepted = hashlib.md5(out.read_bytes()).hexdigest()
    capsys.readouterr()

    # --min-agreement 1.5 stands in for any rejected export; --opset 18 makes it differ.
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: export_tool.main([*argv, "--opset", "18", "--min-agreement", "1.5"]))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "wrote" not in captured.out
    assert captured.err == (
        f"error: {out}: onnxruntime agrees with torch on {{'classification': 1.0}} (2 images), "
        f"below --min-agreement 1.5; the export was rejected and {out} was left as it was\n"
    )
    assert hashlib.md5(out.read_bytes()).hexdigest() == accepted
    assert sorted(os.listdir(tmp_path)) == ["demo.onnx"]

    # The same export, accepted, does replace it (so the md5 above could have changed).
    export_tool.main([*argv, "--opset", "18"])
    assert hashlib.md5(out.read_bytes()).hexdigest() != accepted
    assert "wrote" in capsys.readouterr().out


def test_tool_rejected_first_export_writes_nothing(demo_checkpoint, tmp_path, capsys):
    checkpoint, _ = demo_checkpoint
    out = tmp_path / "sub" / "demo.onnx"
    argv = [DEMO_CONFIG, str(checkpoint), "--out", str(out), "--input-size", "64", "64"]
    with pytest.raises(SystemExit):
        run_cli(lambda: export_tool.main([*argv, "--check-images", "1", "--min-agreement", "2"]))
    assert capsys.readouterr().err.endswith("the export was rejected and nothing was written\n")
    assert not out.exists() and os.listdir(tmp_path / "sub") == []


@pytest.mark.parametrize(
    "option, message",
    [
        (["--opset", "9"], "--opset must be between 11"),
        (["--max-detections", "-3"], "--max-detections must be at least 1, got -3"),
        (["--score-thr", "nan"], "--score-thr is a score in [0, 1], got nan"),
        (["--min-agreement", "nan"], "--min-agreement must be a number >= 0, got nan"),
    ],
)
def test_tool_refuses_values_torch_would_raise_on(tmp_path, capsys, option, message):
    """Values that reach torch.onnx.export or a tensor's shape (a negative size) are
    refused by the argument parser in one line, before anything is built."""
    with pytest.raises(SystemExit) as exit_info:
        export_tool.parse_args([DEMO_CONFIG, "x.pth", "--out", str(tmp_path / "a.onnx"), *option])
    assert exit_info.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err.splitlines()[-1]
