"""Starting a task model from a pretrained backbone with one config line,
``model.backbone.init_cfg=dict(type="Pretrained", checkpoint=PATH)``, from the three kinds
of file users have: an mtvision checkpoint (a trained classifier), a converted TFLite
file, a torchvision ``mobilenet_v2`` state dict. The head stays newly initialised and
one log line says what was loaded and what was not."""

import re

import pytest
import torch
import torchvision
from engine_toy import load_tool

import mtvision
import mtvision.engine  # noqa: F401  (installs mtvision's Pretrained initializer)
from mtvision.errors import CheckpointError
from mtvision.utils.parity import randomize_batch_norms_

TF_SCALING = dict(type="DataPreprocessor", mean=(127.5,) * 3, std=(127.5,) * 3)


def _pretrained(path) -> dict:
    return dict(init_cfg=dict(type="Pretrained", checkpoint=str(path)))


def _state(module: torch.nn.Module) -> dict:
    return {key: value.clone() for key, value in module.state_dict().items()}


def _load_line(messages: list[str]) -> str:
    (line,) = [m for m in messages if m.startswith("load MobileNetV2 from ")]
    return line


@pytest.fixture
def classifier_checkpoint(tmp_path):
    """A 'trained' width-0.35 classifier (3 classes) saved as a Runner saves it."""
    torch.manual_seed(0)
    classifier = mtvision.create_model("mobilenet_v2_035", num_classes=3)
    randomize_batch_norms_(classifier, seed=0, input_size=64)
    path = tmp_path / "classifier.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": classifier.state_dict()}, path)
    return classifier, path


def test_classifier_checkpoint_starts_a_detector_and_a_segmenter(
    classifier_checkpoint, logged_messages
):
    classifier, path = classifier_checkpoint
    torch.manual_seed(1)
    detector = mtvision.create_model(
        "ssdlite320_mobilenet_v2", num_classes=2, width_mult=0.35, **_pretrained(path)
    )
    head = _state(detector.heads["detection"])
    before = _state(detector.backbone)
    detector.init_weights()

    source = classifier.backbone.state_dict()
    loaded = detector.backbone.state_dict()
    assert loaded.keys() == source.keys()  # SSDLite reads final_conv: the whole backbone
    assert all(torch.equal(loaded[k], source[k]) for k in loaded)
    assert not torch.equal(before["stem.conv.weight"], loaded["stem.conv.weight"])
    assert all(torch.equal(v, head[k]) for k, v in detector.heads["detection"].state_dict().items())
    assert _load_line(logged_messages) == (
        f"load MobileNetV2 from {path} (mtvision checkpoint, its 'backbone.*' keys): "
        f"{len(source)} of {len(source)} tensors loaded; left as initialised: none; in the "
        "file, not loaded: heads.classification.* (2)"
    )

    # DeepLab's backbone ends at stage7: the classifier's final_conv is skipped on purpose.
    logged_messages.clear()
    segmenter = mtvision.create_model(
        "deeplabv3_mobilenet_v2", num_classes=4, width_mult=0.35, channels=16, **_pretrained(path)
    )
    segmenter.init_weights()
    kept = segmenter.backbone.state_dict()
    assert all(torch.equal(value, source[key]) for key, value in kept.items())
    assert _load_line(logged_messages).endswith(
        f"{len(kept)} of {len(kept)} tensors loaded; left as initialised: none; in the file, "
        "not loaded: backbone.final_conv.* (6), heads.classification.* (2)"
    )


def test_torchvision_state_dict_starts_a_classifier_with_a_new_head(tmp_path, logged_messages):
    torch.manual_seed(0)
    reference = randomize_batch_norms_(
        torchvision.models.mobilenet_v2(weights=None, width_mult=0.35), seed=1, input_size=64
    )
    path = tmp_path / "mobilenet_v2-torchvision.pth"
    torch.save(reference.state_dict(), path)  # torchvision's files are bare state dicts

    model = mtvision.create_model("mobilenet_v2_035", num_classes=5, **_pretrained(path))
    head = _state(model.heads["classification"])
    model.init_weights()
    inputs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model.eval().backbone(inputs)["final_conv"]
        theirs = reference.eval().features(inputs)
    assert float(theirs.abs().max()) > 0.1
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    fc = model.heads["classification"].state_dict()
    assert all(torch.equal(value, head[key]) for key, value in fc.items())  # 5 classes, new
    total = len(model.backbone.state_dict())
    assert _load_line(logged_messages) == (
        f"load MobileNetV2 from {path} (torchvision mobilenet_v2 state dict): {total} of "
        f"{total} tensors loaded; left as initialised: none; in the file, not loaded: "
        "classifier.1.* (2)"
    )


def test_weights_of_another_width_are_refused_naming_the_file(classifier_checkpoint):
    _, path = classifier_checkpoint
    model = mtvision.create_model("ssdlite320_mobilenet_v2", num_classes=2, **_pretrained(path))
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(path))}: the weights do not fit MobileNetV2 .*"
        r"shape mismatches: stem.conv.weight: weights \(16, 3, 3, 3\) vs model \(32, 3, 3, 3\)"
    ):  # fmt: skip
        model.init_weights()


def test_converted_tflite_backbone_starts_ssdlite_exactly(realdata, tmp_path, logged_messages):
    """Google's ImageNet MobileNetV2 (converted, folded BatchNorm) into an SSDLite backbone
    whose BatchNorms use eps 1e-3: the running variances follow the eps, so the
    backbone computes what the converted classifier's does."""
    checkpoint = tmp_path / "mobilenet_v2_1.0_224_quant.pth"
    source = realdata / "coral_mobilenetv2_tflite/models/mobilenet_v2_1.0_224_quant.tflite"
    load_tool("convert_weights").main([str(source), "--out", str(checkpoint)])
    classifier = mtvision.create_model("mobilenet_v2", checkpoint=str(checkpoint))

    def detector(**options):
        return mtvision.create_model(
            "ssdlite320_mobilenet_v2",
            num_classes=1,
            padding="same",
            **{"norm_eval": True, "data_preprocessor": TF_SCALING, **options},
            **_pretrained(checkpoint),
        )

    model = detector()
    model.init_weights()
    batch_norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.eps for m in batch_norms} == {1e-3}
    assert all(torch.allclose(m.running_var, torch.tensor(1 - 1e-3)) for m in batch_norms)
    inputs = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model.eval().backbone(inputs)["final_conv"]
        theirs = classifier.backbone(inputs)["final_conv"]
    assert float(theirs.abs().max()) > 1.0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    total = len(model.backbone.state_dict())
    assert _load_line(logged_messages).endswith(
        f"(mtvision checkpoint, its 'backbone.*' keys): {total} of {total} tensors loaded; "
        "left as initialised: none; in the file, not loaded: heads.classification.* (2)"
    )
    assert not [m for m in logged_messages if "folded" in m or "expect" in m]

    # Training BatchNorms with batch statistics, or ImageNet mean/std: warned, in one line each.
    logged_messages.clear()
    detector(norm_eval=False, data_preprocessor=None).init_weights()
    warnings = [m for m in logged_messages if "folded" in m or "expect" in m]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{checkpoint}: the weights hold folded BatchNorm")
    assert "set the backbone's norm_eval=True" in warnings[0]
    assert warnings[1] == (
        "the pretrained weights of MobileNetV2 expect RGB inputs normalised with mean "
        "[127.5, 127.5, 127.5], std [127.5, 127.5, 127.5]; the model's data_preprocessor "
        "applies mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375]: set "
        "model.data_preprocessor's mean/std to match (configs/finetune/ do)"
    )
