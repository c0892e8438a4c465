"""MobileNetV2 backbone: torchvision parity, sizes, taps (FeatureInfo), dilation, freezing,
torchvision weight loading (mtvision.backbones.weights)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

import mtvision
from mtvision.backbones import (
    FeatureInfo,
    FeatureSpec,
    InvertedResidual,
    MobileNetV2,
    load_torchvision_weights,
    torchvision_module_map,
)
from mtvision.errors import CheckpointError, ConfigError
from mtvision.utils.complexity import count_multiply_adds, count_parameters
from mtvision.utils.parity import randomize_batch_norms_

ALL_TAPS = (
    "stem",
    "stage1",
    "layer4_depthwise",
    "stage2",
    "stage3",
    "stage4",
    "stage5",
    "layer15_expansion",
    "stage6",
    "stage7",
    "final_conv",
)


def _seeded_torchvision(width_mult: float, num_classes: int = 1000) -> nn.Module:
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2(
        weights=None, width_mult=width_mult, num_classes=num_classes
    )
    randomize_batch_norms_(reference, seed=1)
    with torch.no_grad():
        # Larger classifier weights than the init's N(0, 0.01), so logits are O(1).
        reference.classifier[1].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    return reference.eval()


CLASSIFIER_NAMES = {0.5: "mobilenet_v2_050", 0.75: "mobilenet_v2_075", 1.0: "mobilenet_v2", 1.4: "mobilenet_v2_140"}  # fmt: skip


@pytest.mark.parametrize("width_mult", [0.5, 0.75, 1.0, 1.4])
def test_logits_and_taps_match_torchvision_with_copied_weights(width_mult: float) -> None:
    """The backbone's taps and, with the ClassifierHead on top (the classifier by name),
    the logits equal torchvision's mobilenet_v2 with the same weights."""
    reference = _seeded_torchvision(width_mult)
    classifier = mtvision.create_model(CLASSIFIER_NAMES[width_mult], num_classes=1000).eval()
    classifier.load_torchvision_state_dict(reference.state_dict())
    model = classifier.backbone
    model.set_out_features(("layer15_expansion", "final_conv"))
    backbone_only = MobileNetV2(width_mult=width_mult).eval()
    result = load_torchvision_weights(backbone_only, reference.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []

    captured = {}
    reference.features[14].conv[0].register_forward_hook(
        lambda module, inputs, output: captured.__setitem__("expansion", output.clone())
    )
    reference.features.register_forward_hook(
        lambda module, inputs, output: captured.__setitem__("features", output.clone())
    )
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected_logits = reference(images)
        outputs = model(images)
        outputs["logits"] = classifier.heads["classification"](outputs)["cls_logits"]
        assert torch.equal(backbone_only(images)["final_conv"], outputs["final_conv"])

    assert list(outputs) == ["layer15_expansion", "final_conv", "logits"]
    for name, expected in (
        ("logits", expected_logits),
        ("layer15_expansion", captured["expansion"]),
        ("final_conv", captured["features"]),
    ):
        scale = expected.abs().max().item()
        difference = (outputs[name] - expected).abs().max().item()
        print(
            f"width {width_mult} {name}: max |ref| {scale:.4g}, max rel diff {difference / scale:.3g}"
        )
        assert outputs[name].shape == expected.shape
        # The reference must depend on the input, else matching it proves little.
        assert (expected[0] - expected[1]).abs().max().item() > 0.1 * scale
        assert difference <= 1e-5 * scale


def test_parameter_count_and_multiply_adds_at_width_1() -> None:
    model = mtvision.create_model("mobilenet_v2", num_classes=1000)  # backbone + ClassifierHead
    multiply_adds = count_multiply_adds(model, (1, 3, 224, 224))
    print(f"MobileNetV2 1.0 @224: {count_parameters(model)} params, {multiply_adds} MAdds")
    assert count_parameters(model) == 3_504_872
    # torchvision's model card: 0.30 GFLOPS (multiply-adds); the paper: ~300M.
    assert multiply_adds == 300_774_272


def test_parameter_count_at_width_1_4_equals_torchvision() -> None:
    model = mtvision.create_model("mobilenet_v2_140", num_classes=1000)
    reference = torchvision.models.mobilenet_v2(weights=None, width_mult=1.4)
    print(f"MobileNetV2 1.4: {count_parameters(model)} params")
    assert count_parameters(model) == count_parameters(reference) == 6_108_776


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_every_tap_has_the_shape_its_feature_spec_declares(output_stride: int) -> None:
    model = MobileNetV2(output_stride=output_stride, out_features=ALL_TAPS).eval()
    assert [spec.name for spec in model.feature_info] == list(ALL_TAPS)
    for height, width in ((224, 224), (320, 320), (513, 513), (301, 397)):
        with torch.no_grad():
            outputs = model(torch.zeros(1, 3, height, width))
        assert list(outputs) == list(ALL_TAPS)
        for spec in model.feature_info:
            expected = (
                1,
                spec.channels,
                math.ceil(height / spec.stride),
                math.ceil(width / spec.stride),
            )
            assert tuple(outputs[spec.name].shape) == expected, (spec, height, width)


@pytest.mark.parametrize(
    ("output_stride", "expected_strides"),
    [
        (32, [2, 2, 4, 4, 8, 16, 16, 16, 32, 32, 32]),
        (16, [2, 2, 4, 4, 8, 16, 16, 16, 16, 16, 16]),
        (8, [2, 2, 4, 4, 8, 8, 8, 8, 8, 8, 8]),
    ],
)
def test_feature_info_strides_follow_output_stride(
    output_stride: int, expected_strides: list[int]
) -> None:
    model = MobileNetV2(output_stride=output_stride)
    assert [spec.stride for spec in model.feature_info] == expected_strides


@pytest.mark.parametrize(
    ("output_stride", "expected"),
    [
        # (stride, dilation) of each depthwise conv from stage4 on.
        (
            16,
            {
                "stage4": [(2, 1), (1, 1), (1, 1), (1, 1)],
                "stage5": [(1, 1), (1, 1), (1, 1)],
                "stage6": [(1, 1), (1, 2), (1, 2)],
                "stage7": [(1, 2)],
            },
        ),
        (
            8,
            {
                "stage4": [(1, 1), (1, 2), (1, 2), (1, 2)],
                "stage5": [(1, 2), (1, 2), (1, 2)],
                "stage6": [(1, 2), (1, 4), (1, 4)],
                "stage7": [(1, 4)],
            },
        ),
    ],
)
def test_dilation_scheme_matches_deeplab(output_stride: int, expected: dict) -> None:
    model = MobileNetV2(output_stride=output_stride)
    for stage_name, stride_dilations in expected.items():
        stage = getattr(model, stage_name)
        actual = [
            (block.depthwise.conv.stride[0], block.depthwise.conv.dilation[0]) for block in stage
        ]
        assert actual == stride_dilations, stage_name
        assert all(
            block.depthwise.conv.padding[0] == block.depthwise.conv.dilation[0] for block in stage
        )


def test_feature_info_channels_at_width_0_35_and_1_4() -> None:
    def channels(width_mult: float) -> dict[str, int]:
        return {spec.name: spec.channels for spec in MobileNetV2(width_mult).feature_info}

    assert channels(0.35) == {
        "stem": 16,
        "stage1": 8,
        "layer4_depthwise": 48,
        "stage2": 8,
        "stage3": 16,
        "stage4": 24,
        "stage5": 32,
        "layer15_expansion": 192,
        "stage6": 56,
        "stage7": 112,
        "final_conv": 1280,
    }
    assert channels(1.4) == {
        "stem": 48,
        "stage1": 24,
        "layer4_depthwise": 192,
        "stage2": 32,
        "stage3": 48,
        "stage4": 88,
        "stage5": 136,
        "layer15_expansion": 816,
        "stage6": 224,
        "stage7": 448,
        "final_conv": 1792,
    }
    assert all(isinstance(spec, FeatureSpec) for spec in MobileNetV2(0.35).feature_info)


def test_default_out_features_and_no_classifier() -> None:
    model = MobileNetV2().eval()
    assert model.out_features == ("final_conv",)
    with torch.no_grad():
        outputs = model(torch.zeros(2, 3, 64, 64))
    assert list(outputs) == ["final_conv"] and outputs["final_conv"].shape == (2, 1280, 2, 2)
    # The classifier is a head (ClassifierHead): the backbone has no "logits" tap.
    assert not hasattr(model, "classifier")
    assert "logits" not in model.feature_info
    with pytest.raises(TypeError, match="num_classes"):
        MobileNetV2(num_classes=10)


def test_feature_info_is_a_sequence_with_lookup_by_name() -> None:
    info = MobileNetV2(width_mult=0.35, out_features=("stage7",)).feature_info
    assert isinstance(info, FeatureInfo)
    assert len(info) == 10 and info[0] == FeatureSpec("stem", 16, 2)
    assert info[-1] == FeatureSpec("stage7", 112, 32)
    assert isinstance(info[-2:], FeatureInfo) and info[-2:].names == ("stage6", "stage7")
    assert [spec.name for spec in info] == list(info.names) == list(ALL_TAPS[:-1])
    assert info.strides == (2, 2, 4, 4, 8, 16, 16, 16, 32, 32)
    assert info.channels[-1] == 112
    assert info.get("layer15_expansion") == FeatureSpec("layer15_expansion", 192, 16)
    assert "stage3" in info and "final_conv" not in info
    assert info.select(["stage7", "stage3"]) == [info.get("stage7"), info.get("stage3")]
    assert info == list(info)  # compares equal to the list it replaces
    with pytest.raises(KeyError, match=r"unknown feature tap 'final_conv'; available: \['stem',"):
        info.get("final_conv")


def test_feature_info_refuses_duplicate_names_and_decreasing_strides() -> None:
    with pytest.raises(ConfigError) as error:
        FeatureInfo([FeatureSpec("a", 8, 2), FeatureSpec("b", 16, 4), FeatureSpec("a", 32, 8)])
    assert str(error.value) == (
        "feature taps must have unique names; 'a' appears twice in ['a', 'b', 'a']"
    )
    with pytest.raises(ConfigError) as error:
        FeatureInfo([FeatureSpec("a", 8, 2), FeatureSpec("b", 16, 8), FeatureSpec("c", 32, 4)])
    assert str(error.value) == (
        "feature tap strides must never decrease along depth: 'c' (stride 4) comes after "
        "'b' (stride 8); strides [2, 8, 4]"
    )
    assert isinstance(error.value, ValueError)  # not an AssertionError, not skipped by -O
    assert FeatureInfo([FeatureSpec("a", 8, 2), FeatureSpec("b", 8, 2)]).strides == (2, 2)


def test_forward_stops_after_the_deepest_requested_tap() -> None:
    model = MobileNetV2(out_features=("stage2", "stage5")).eval()
    model.set_out_features(("stage2", "stage3"))
    called = []
    for name in ("stage3", "stage4", "stage5"):
        getattr(model, name).register_forward_hook(lambda *args, name=name: called.append(name))
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 64))
    assert called == ["stage3"]
    assert list(outputs) == ["stage2", "stage3"]


def test_modules_past_the_deepest_tap_are_dropped() -> None:
    model = MobileNetV2(out_features=("stage7",))
    assert not hasattr(model, "final_conv")
    assert model.dropped_modules == ("final_conv",)
    assert [spec.name for spec in model.feature_info][-2:] == ["stage6", "stage7"]
    # DeepLabv3's backbone: Table 2 up to the 320-channel stage7, 412,160 fewer than to final_conv.
    assert count_parameters(model) == count_parameters(MobileNetV2()) - 412_160 == 1_811_712
    with pytest.raises(ValueError, match=r"unknown out_features \['final_conv'\].*deepest tap"):
        model.set_out_features(("final_conv",))


def test_a_cut_at_the_expansion_keeps_only_the_expand_layer() -> None:
    model = MobileNetV2(out_features=("stage2", "layer15_expansion")).eval()
    assert model.dropped_modules == (
        "stage7",
        "final_conv",
        "stage6.1",
        "stage6.2",
        "stage6.0.depthwise",
        "stage6.0.project",
    )
    assert len(model.stage6) == 1 and model.stage6[0].project is None
    assert [spec.name for spec in model.feature_info][-1] == "layer15_expansion"
    depthwise_runs = []
    model.stage5.register_forward_hook(lambda *args: depthwise_runs.append("stage5"))
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 64))
    assert depthwise_runs == ["stage5"]
    assert outputs["layer15_expansion"].shape == (1, 576, 4, 4)
    with pytest.raises(RuntimeError, match="cut after its expansion"):
        model.stage6[0](torch.zeros(1, 96, 4, 4))


def test_a_cut_at_layer4_depthwise_keeps_that_blocks_depthwise_conv() -> None:
    """DeepLabv3+'s low-level tap: the second block of stage2 after its depthwise conv
    (TF-DeepLab's layer_4/depthwise_output), 144 channels at stride 4."""
    model = MobileNetV2(out_features=("layer4_depthwise",)).eval()
    assert model.dropped_modules[-1] == "stage2.1.project"
    assert len(model.stage2) == 2 and model.stage2[1].project is None
    assert model.feature_info.get("layer4_depthwise") == FeatureSpec("layer4_depthwise", 144, 4)
    whole = MobileNetV2(out_features=("layer4_depthwise", "stage3")).eval()
    whole.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(1, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tap = model(x)["layer4_depthwise"]
        block = whole.stage2[1]
        expected = block.depthwise(block.expand(whole.stage2[0](whole.stage1(whole.stem(x)))))
        outputs = whole(x)
    assert tap.shape == (1, 144, 10, 13)
    assert torch.equal(tap, expected) and torch.equal(outputs["layer4_depthwise"], expected)
    assert list(outputs) == ["layer4_depthwise", "stage3"]


def test_seeded_weights_do_not_depend_on_the_kept_taps() -> None:
    torch.manual_seed(0)
    whole = MobileNetV2().state_dict()
    torch.manual_seed(0)
    cut = MobileNetV2(out_features=("layer15_expansion",)).state_dict()
    assert cut.keys() < whole.keys()
    assert all(torch.equal(value, whole[key]) for key, value in cut.items())


def test_inverted_residual_exposes_its_expansion() -> None:
    block = InvertedResidual(16, 24, stride=2, expand_ratio=6).eval()
    assert block.expansion_channels == 96
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        out, expansion = block(x, return_expansion=True)
        assert torch.equal(expansion, block.expand(x))
        assert torch.equal(out, block(x))
    assert out.shape == (1, 24, 5, 5)
    assert expansion.shape == (1, 96, 9, 9)
    assert not block.use_residual
    assert InvertedResidual(24, 24, stride=1, expand_ratio=6).use_residual
    no_expansion = InvertedResidual(32, 16, stride=1, expand_ratio=1)
    assert no_expansion.expand is None and no_expansion.expansion_channels == 32


def test_frozen_stages_get_no_gradient_and_stay_in_eval_mode() -> None:
    model = MobileNetV2(frozen_stages=2, out_features=("stage4",))
    model.train()
    frozen_prefixes = ("stem.", "stage1.", "stage2.")
    assert not model.stem.training and not model.stem.bn.training
    assert not model.stage2[1].project.bn.training
    assert model.stage3[0].project.bn.training
    running_mean_before = model.stage1[0].depthwise.bn.running_mean.clone()

    model(torch.randn(2, 3, 64, 64))["stage4"].square().mean().backward()

    for name, parameter in model.named_parameters():
        if name.startswith(frozen_prefixes):
            assert not parameter.requires_grad and parameter.grad is None, name
        elif name.startswith(("stage3.", "stage4.")):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert torch.equal(model.stage1[0].depthwise.bn.running_mean, running_mean_before)


def test_norm_eval_keeps_running_statistics() -> None:
    model = MobileNetV2(norm_eval=True, out_features=("stage3",))
    model.train()
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    statistics_before = {
        name: buffer.clone() for name, buffer in model.named_buffers() if "running" in name
    }
    for _ in range(2):
        model(torch.randn(2, 3, 64, 64) * 3 + 1)
    for name, buffer in model.named_buffers():
        if "running" in name:
            assert torch.equal(buffer, statistics_before[name]), name

    updating = MobileNetV2(out_features=("stage3",)).train()
    mean_before = updating.stem.bn.running_mean.clone()
    updating(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert not torch.equal(updating.stem.bn.running_mean, mean_before)


def test_out_features_errors_list_available_taps() -> None:
    with pytest.raises(ValueError, match=r"unknown out_features \['stage8'\].*layer15_expansion"):
        MobileNetV2(out_features=("stage3", "stage8"))
    with pytest.raises(ValueError, match=r"unknown out_features \['logits'\]"):
        MobileNetV2(out_features=("logits",))
    with pytest.raises(ValueError, match="duplicates"):
        MobileNetV2(out_features=("stage3", "stage3"))
    with pytest.raises(ValueError, match="at least one"):
        MobileNetV2(out_features=())


@pytest.mark.parametrize("output_stride", [4, 12, 64])
def test_output_stride_must_be_8_16_or_32(output_stride: int) -> None:
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16, 32\)"):
        MobileNetV2(output_stride=output_stride)


def test_loading_weights_of_another_width_lists_shape_mismatches() -> None:
    model = MobileNetV2(width_mult=1.0)
    other = torchvision.models.mobilenet_v2(weights=None, width_mult=0.5).state_dict()
    with pytest.raises(CheckpointError) as error:
        load_torchvision_weights(model, other)
    message = str(error.value)
    assert message.startswith(
        "torchvision mobilenet_v2 weights: the weights do not fit "
        "MobileNetV2(width_mult=1.0) (56 of 312 model keys match"
    )
    assert "shape mismatches: stem.conv.weight: weights (16, 3, 3, 3) vs model (32, 3, 3, 3)" in (
        message
    )
    # One line: the first ten mismatches named, the other 246 counted.
    assert "\n" not in message and message.endswith("... (246 more)")
    assert isinstance(error.value, ValueError)  # a wrong argument, as in torch's loaders


def test_missing_and_unexpected_keys_are_listed() -> None:
    model = MobileNetV2()
    state_dict = torchvision.models.mobilenet_v2(weights=None).state_dict()
    del state_dict["features.3.conv.1.1.running_var"]
    state_dict["features.19.weight"] = torch.zeros(4)
    with pytest.raises(CheckpointError) as error:
        load_torchvision_weights(model, state_dict)
    message = str(error.value)
    assert (
        "missing keys (in the model, not in the weights): stage2.1.depthwise.bn.running_var;"
        in (message)
    )
    assert message.endswith(
        "unexpected keys (in the weights, not in the model): features.19.weight"
    )

    result = load_torchvision_weights(model, state_dict, strict=False)
    assert result.missing_keys == ["stage2.1.depthwise.bn.running_var (144,)"]
    assert result.unexpected_keys == ["features.19.weight (4,)"]


def test_classifier_keys_are_dropped_for_a_backbone_without_classifier(tmp_path) -> None:
    reference = _seeded_torchvision(1.0)
    checkpoint = tmp_path / "mobilenet_v2.pth"
    torch.save(reference.state_dict(), checkpoint)
    backbone = MobileNetV2().eval()
    result = load_torchvision_weights(backbone, torch.load(checkpoint, weights_only=True))
    assert result == ([], [])
    assert torch.equal(
        backbone.stage7[0].project.bn.running_var, reference.features[17].conv[3].running_var
    )
    assert torch.equal(
        backbone.final_conv.bn.num_batches_tracked, reference.features[18][1].num_batches_tracked
    )
    with torch.no_grad():
        expected = reference.features(torch.ones(1, 3, 64, 64))
        assert torch.equal(backbone(torch.ones(1, 3, 64, 64))["final_conv"], expected)


def test_torchvision_module_map_covers_every_torchvision_module_with_state() -> None:
    reference = torchvision.models.mobilenet_v2(weights=None)
    stateful = {key.rpartition(".")[0] for key in reference.state_dict()}
    module_map = torchvision_module_map()
    # torchvision's classifier.1 is the ClassifierHead's (its own torchvision loader).
    assert set(module_map) == stateful - {"classifier.1"}
    assert set(module_map.values()) == {
        key.rpartition(".")[0] for key in MobileNetV2().state_dict()
    }
    assert module_map["features.1.conv.1"] == "stage1.0.project.conv"
    assert module_map["features.14.conv.0.0"] == "stage6.0.expand.conv"
    assert module_map["features.18.1"] == "final_conv.bn"


def test_registered_in_mtvision_models_registry() -> None:
    from mtvision.registry import MODELS

    model = MODELS.build(dict(type="MobileNetV2", width_mult=0.5, out_features=("stage3",)))
    assert isinstance(model, MobileNetV2)
    assert model.out_features == ("stage3",)


@pytest.mark.parametrize(
    ("taps", "module"),
    [
        (("stage7",), lambda tv: tv.features[17]),
        (("layer15_expansion",), lambda tv: tv.features[14].conv[0]),
    ],
)
def test_a_cut_backbone_loads_torchvision_weights_strictly(taps, module) -> None:
    reference = _seeded_torchvision(1.0)
    backbone = MobileNetV2(out_features=taps).eval()
    # The keys of the dropped modules (and the classifier) are absent on purpose.
    assert load_torchvision_weights(backbone, reference.state_dict()) == ([], [])
    captured = []
    module(reference).register_forward_hook(lambda mod, inputs, output: captured.append(output))
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference(images)
        (output,) = backbone(images).values()
    assert (captured[0][0] - captured[0][1]).abs().max() > 0.1 * captured[0].abs().max()
    assert (output - captured[0]).abs().max() <= 1e-5 * captured[0].abs().max()


def test_a_cut_backbone_still_refuses_real_mismatches() -> None:
    backbone = MobileNetV2(out_features=("stage7",))
    state_dict = torchvision.models.mobilenet_v2(weights=None).state_dict()
    del state_dict["features.17.conv.2.weight"]  # stage7, which the backbone keeps
    state_dict["features.19.weight"] = torch.zeros(4)
    with pytest.raises(CheckpointError) as error:
        load_torchvision_weights(backbone, state_dict)
    message = str(error.value)
    assert "missing keys (in the model, not in the weights): stage7.0.project.conv.weight" in (
        message
    )
    assert message.endswith(
        "unexpected keys (in the weights, not in the model): features.19.weight"
    )
    assert "final_conv" not in message
    other_width = torchvision.models.mobilenet_v2(weights=None, width_mult=0.5).state_dict()
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_torchvision_weights(backbone, other_width)
