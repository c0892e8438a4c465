"""DeepLabV3PlusHead: logits at the low-level tap's stride, its layers and size, taps that
do not exist, the loss, TF's legacy resize, the multi-task model and the deployed ONNX."""

import math

import numpy as np
import pytest
import torch
from engine_toy import load_tool
from torch import nn

import mtvision
from mtvision.backbones import FeatureSpec, MobileNetV2
from mtvision.errors import ConfigError
from mtvision.heads import DeepLabV3Head, DeepLabV3PlusHead
from mtvision.layers import SeparableConvNormAct
from mtvision.models import MultiTaskModel
from mtvision.ops.resize import resize_asymmetric
from mtvision.utils.complexity import count_multiply_adds, count_parameters
from mtvision.utils.parity import randomize_batch_norms_

TAPS = ("stage7", "layer4_depthwise")


def _backbone(output_stride=16, taps=TAPS):
    torch.manual_seed(0)
    return MobileNetV2(width_mult=0.35, output_stride=output_stride, out_features=taps).eval()


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("aspp", [False, True])
def test_logits_have_one_pixel_per_four_input_pixels(output_stride, aspp):
    backbone = _backbone(output_stride)
    info = backbone.feature_info
    assert info.get("layer4_depthwise") == FeatureSpec("layer4_depthwise", 48, 4)
    head = DeepLabV3PlusHead(info, num_classes=5, channels=32, aspp=aspp).eval()
    assert head.encoder_spec == info.get("stage7") and head.low_level_spec.stride == 4
    dilations = sorted(
        m.dilation[0] for m in head.aspp.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    )  # fmt: skip
    assert dilations == ([] if not aspp else [6, 12, 18] if output_stride == 16 else [12, 24, 36])
    for height, width in [(513, 513), (130, 97), (64, 64)]:
        with torch.no_grad():
            logits = head(backbone(torch.randn(1, 3, height, width)))["seg_logits"]
        assert logits.shape == (1, 5, math.ceil(height / 4), math.ceil(width / 4))


def test_layers_size_and_cost_of_the_default_head():
    """48-channel low-level projection, two depthwise-separable 3x3 convs of 256 on the
    304-channel concat; 21 classes on MobileNetV2 1.0: 2,271,109 parameters (the
    DeepLabv3 head of Table 7 plus the decoder's 157,552)."""
    model = mtvision.create_model("deeplabv3plus_mobilenet_v2", num_classes=21).eval()
    head = model.heads["segmentation"]
    assert head.low_level.conv.weight.shape == (48, 144, 1, 1)
    first, second = head.decoder
    assert isinstance(first, SeparableConvNormAct) and isinstance(second, SeparableConvNormAct)
    assert first.depthwise.conv.weight.shape == (304, 1, 3, 3)
    assert first.depthwise.conv.groups == 304 and first.pointwise.conv.weight.shape == (
        256,
        304,
        1,
        1,
    )
    assert second.depthwise.conv.groups == 256
    assert type(first.depthwise.act) is nn.ReLU and type(first.pointwise.act) is nn.ReLU
    v3 = mtvision.create_model("deeplabv3_mobilenet_v2", num_classes=21)
    assert count_parameters(model) == 2_271_109
    assert count_parameters(model) - count_parameters(v3) == 157_552
    assert count_parameters(model.backbone) == count_parameters(v3.backbone)
    head_madds = count_multiply_adds(model, (1, 3, 512, 512)) - count_multiply_adds(
        v3, (1, 3, 512, 512)
    )
    assert head_madds > 2.4e9  # the decoder at 128x128 costs more than the whole v3 head


def test_a_low_level_tap_that_does_not_exist_is_a_config_error_listing_the_taps():
    with pytest.raises(ConfigError, match=r"'segmentation': \('stage7', 'layer3_depthwise'\)\}.*"
                       r"unknown out_features \['layer3_depthwise'\]; available: \['stem', "
                       r"'stage1', 'layer4_depthwise', 'stage2'"):  # fmt: skip
        MultiTaskModel(
            backbone=dict(type="MobileNetV2", width_mult=0.35, output_stride=16),
            heads=dict(
                segmentation=dict(
                    type="DeepLabV3PlusHead",
                    num_classes=3,
                    in_features=("stage7", "layer3_depthwise"),
                )
            ),
        )
    info = _backbone().feature_info
    with pytest.raises(ConfigError, match=r"unknown in_features of DeepLabV3PlusHead \['x'\]; "
                       r"available: \['stem', 'stage1', 'layer4_depthwise'"):  # fmt: skip
        DeepLabV3PlusHead(info, num_classes=3, in_features=("stage7", "x"))
    with pytest.raises(ConfigError, match=r"low-level tap 'stage6' \(stride 16\) must be finer"):
        DeepLabV3PlusHead(
            MobileNetV2(width_mult=0.35, output_stride=16).feature_info,
            num_classes=3,
            in_features=("stage7", "stage6"),
        )


def test_loss_is_the_cross_entropy_of_the_upsampled_logits_and_falls_when_trained():
    torch.manual_seed(0)
    model = mtvision.create_model("deeplabv3plus_mobilenet_v2", num_classes=3, width_mult=0.35)
    images = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(48, 64, dtype=torch.uint8)
    mask[10:30, 20:50] = 2
    mask[:, :8] = 1
    mask[0] = 255
    samples = [{"mask": mask}, {"mask": mask.flip(1)}]
    head = model.heads["segmentation"]
    model.eval()
    with torch.no_grad():
        logits = model(images, mode="tensor")["segmentation"]["seg_logits"]
        loss = model(images, samples, mode="loss")["segmentation.loss_seg"]
    upsampled = nn.functional.interpolate(logits, (48, 64), mode="bilinear", align_corners=False)
    target = torch.stack([m.long() for m in (mask, mask.flip(1))])
    expected = nn.functional.cross_entropy(upsampled, target, ignore_index=255)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert head.in_spec.name == "layer4_depthwise"

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        step_loss = model(images, samples, mode="loss")["segmentation.loss_seg"]
        step_loss.backward()
        optimizer.step()
        losses.append(float(step_loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_tf_legacy_resize_reads_source_index_times_in_over_out():
    """TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False): output i reads
    source i * in / out, clamped; checked against that formula written out."""
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def reference(size):
        out = np.zeros((1, 2, *size))
        data = x.numpy()
        for i in range(size[0]):
            sy = i * 5 / size[0]
            y0, dy = int(sy), sy - int(sy)
            y1 = min(y0 + 1, 4)
            for j in range(size[1]):
                sx = j * 7 / size[1]
                x0, dx = int(sx), sx - int(sx)
                x1 = min(x0 + 1, 6)
                top = data[..., y0, x0] * (1 - dx) + data[..., y0, x1] * dx
                bottom = data[..., y1, x0] * (1 - dx) + data[..., y1, x1] * dx
                out[..., i, j] = top * (1 - dy) + bottom * dy
        return out

    for size in [(20, 28), (13, 9), (5, 7)]:
        np.testing.assert_allclose(resize_asymmetric(x, size).numpy(), reference(size), atol=1e-12)
    # Not the half-pixel rule PyTorch uses by default.
    half_pixel = nn.functional.interpolate(x, (20, 28), mode="bilinear", align_corners=False)
    assert float((half_pixel - resize_asymmetric(x, (20, 28))).abs().max()) > 0.1


def test_multitask_model_takes_the_decoder_head_alone_or_beside_deeplabv3():
    model = mtvision.create_model(
        "mobilenet_v2_multitask",
        num_classes=dict(segmentation=5, detection=3),
        segmentation_head="deeplabv3plus",
        width_mult=0.35,
    ).eval()
    assert type(model.heads["segmentation"]) is DeepLabV3PlusHead
    assert set(model.backbone.out_features) >= {"layer4_depthwise", "stage7"}
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96), mode="tensor")
    assert outputs["segmentation"]["seg_logits"].shape == (1, 5, 16, 24)
    with pytest.raises(ValueError, match=r"segmentation_head must be one of \['deeplabv3', "):
        mtvision.create_model("mobilenet_v2_multitask", segmentation_head="unet")

    both = MultiTaskModel(
        backbone=dict(type="MobileNetV2", width_mult=0.35, output_stride=16),
        heads=dict(
            voc=dict(type="DeepLabV3Head", num_classes=21),
            ade=dict(type="DeepLabV3PlusHead", num_classes=151),
        ),
    ).eval()
    assert type(both.heads["voc"]) is DeepLabV3Head
    with torch.no_grad():
        outputs = both(torch.randn(1, 3, 64, 96), mode="tensor")
    assert outputs["voc"]["seg_logits"].shape == (1, 21, 4, 6)
    assert outputs["ade"]["seg_logits"].shape == (1, 151, 16, 24)


@pytest.mark.parametrize("legacy", [False, True])
def test_deployed_onnx_of_a_random_head_passes_the_export_check(tmp_path, legacy):
    """tools/export_onnx.py on the VOC recipe at width 0.35 with random weights: torch and
    onnxruntime agree on every pixel of the check images (--min-agreement 1.0)."""
    options = ["model.backbone.width_mult=0.35", "model.heads.segmentation.num_classes=4"]
    if legacy:
        options.append("model.heads.segmentation.tf_legacy_resize=True")
    torch.manual_seed(0)
    model = mtvision.create_model(
        "deeplabv3plus_mobilenet_v2", num_classes=4, width_mult=0.35, tf_legacy_resize=legacy
    )
    randomize_batch_norms_(model, seed=0, input_size=96)
    checkpoint = tmp_path / "random.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, checkpoint)
    agreements = load_tool("export_onnx").main(
        ["configs/deeplabv3plus_voc.py", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
         "--input-size", "64", "96", "--check-images", "3", "--min-agreement", "1.0",
         "--cfg-options", *options]
    )  # fmt: skip
    assert agreements == {"segmentation": 1.0}
