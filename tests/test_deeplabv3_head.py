"""DeepLabV3Head: ASPP variants and rates, sizes, and its contract (loss over the samples
with a mask, label maps at the original size, test-time views)."""

import math

import pytest
import torch
from torch import nn

from mtvision.backbones import FeatureSpec, MobileNetV2
from mtvision.heads import DeepLabV3Head
from mtvision.layers.aspp import ImagePooling
from mtvision.utils.complexity import count_parameters


def _atrous_dilations(head: DeepLabV3Head) -> list[int]:
    return [
        module.dilation[0]
        for module in head.modules()
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3)
    ]


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("aspp", [False, True])
def test_logits_have_one_pixel_per_output_stride(output_stride, aspp):
    torch.manual_seed(0)
    backbone = MobileNetV2(width_mult=0.35, output_stride=output_stride, out_features=("stage7",))
    (spec,) = [s for s in backbone.feature_info if s.name == "stage7"]
    assert spec == FeatureSpec("stage7", 112, output_stride)
    head = DeepLabV3Head(backbone.feature_info, num_classes=21, channels=32, aspp=aspp).eval()
    assert head.in_spec == spec
    for height, width in [(513, 513), (321, 257), (64, 64)]:
        with torch.no_grad():
            logits = head(backbone.eval()(torch.randn(1, 3, height, width)))["seg_logits"]
        expected = (1, 21, math.ceil(height / output_stride), math.ceil(width / output_stride))
        assert logits.shape == expected


def test_atrous_rates_follow_the_tap_stride():
    def head(stride, **kwargs):
        return DeepLabV3Head([FeatureSpec("stage7", 320, stride)], num_classes=21, **kwargs)

    assert _atrous_dilations(head(16, aspp=True)) == [6, 12, 18]
    assert _atrous_dilations(head(8, aspp=True)) == [12, 24, 36]
    assert _atrous_dilations(head(32, aspp=True)) == [3, 6, 9]
    assert _atrous_dilations(head(8, aspp=True, atrous_rates=(1, 2))) == [2, 4]
    # The on-device head has no 3x3 conv at all: 1x1 branch + image pooling only.
    assert _atrous_dilations(head(16, aspp=False)) == []
    assert len(head(16, aspp=False).aspp.branches) == 2
    with pytest.raises(ValueError, match="atrous rate 5 .* stride 32"):
        head(32, aspp=True, atrous_rates=(5,))


def test_parameter_counts_by_hand():
    spec = [FeatureSpec("stage7", 320, 16)]
    conv_bn_1x1 = 320 * 256 + 2 * 256
    conv_bn_3x3 = 320 * 256 * 9 + 2 * 256
    classifier = 256 * 21 + 21
    # On-device: 1x1 branch, image pooling, projection of 2 x 256 channels, classifier.
    ondevice = DeepLabV3Head(spec, num_classes=21)
    assert count_parameters(ondevice) == 2 * conv_bn_1x1 + (512 * 256 + 512) + classifier
    assert count_parameters(ondevice) == 301_845
    # ASPP adds three plain (not separable) 3x3 branches; projection from 5 x 256.
    full = DeepLabV3Head(spec, num_classes=21, aspp=True)
    expected = 2 * conv_bn_1x1 + 3 * conv_bn_3x3 + (1280 * 256 + 512) + classifier
    assert count_parameters(full) == expected == 2_711_829


def test_image_pooling_is_global_context_broadcast_over_the_map():
    torch.manual_seed(0)
    pooling = ImagePooling(8, 4).eval()
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        out = pooling(x)
        shuffled = pooling(x.flatten(2)[:, :, torch.randperm(35)].reshape(2, 8, 5, 7))
        expected = pooling.conv(x.mean(dim=(2, 3), keepdim=True))
    assert out.shape == (2, 4, 5, 7)
    # Constant over the map, equal to the conv of the mean, blind to pixel order.
    torch.testing.assert_close(out, expected.expand(-1, -1, 5, 7))
    torch.testing.assert_close(out, shuffled)
    assert not torch.allclose(out[0], out[1])


def test_image_pooling_refuses_a_single_image_batch_in_training():
    pooling = ImagePooling(8, 4).train()
    with pytest.raises(ValueError, match="batch of >= 2 images"):
        pooling(torch.randn(1, 8, 5, 5))
    assert pooling(torch.randn(2, 8, 5, 5)).shape == (2, 4, 5, 5)
    assert pooling.eval()(torch.randn(1, 8, 5, 5)).shape == (1, 4, 5, 5)


def test_initial_logits_are_small_so_the_first_loss_is_near_log_k():
    torch.manual_seed(0)
    head = DeepLabV3Head([FeatureSpec("stage7", 32, 16)], num_classes=21, channels=16).eval()
    logits = head({"stage7": torch.randn(2, 32, 9, 9)})["seg_logits"]
    loss = nn.functional.cross_entropy(logits, torch.zeros(2, 9, 9, dtype=torch.long))
    assert loss.item() == pytest.approx(math.log(21), abs=0.05)
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3Head([FeatureSpec("stage7", 32, 16)], num_classes=0)


SPECS = [FeatureSpec("stage5", 8, 16), FeatureSpec("stage7", 12, 16)]
INPUT = (40, 56)


def _head(**kwargs) -> DeepLabV3Head:
    torch.manual_seed(0)
    return DeepLabV3Head(SPECS, num_classes=4, channels=8, **kwargs)


def _outputs(head: DeepLabV3Head, batch: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    features = {"stage7": torch.randn(batch, 12, 3, 4, generator=generator)}
    return head(features)


def _mask(seed: int, size=INPUT) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, size, dtype=torch.uint8, generator=generator)


def test_loss_covers_only_the_samples_with_a_mask():
    head = _head().eval()
    outputs = _outputs(head, 3)
    outputs["seg_logits"].retain_grad()
    samples = [{"mask": _mask(0)}, {"meta": {"img_path": "no_mask.jpg"}}, {"mask": _mask(1)}]
    loss = head.loss(outputs, samples, input_size=INPUT)["loss_seg"]
    logits = nn.functional.interpolate(
        outputs["seg_logits"].detach()[[0, 2]], INPUT, mode="bilinear", align_corners=False
    )
    target = torch.stack([samples[0]["mask"], samples[2]["mask"]]).long()
    assert loss.item() == pytest.approx(
        nn.functional.cross_entropy(logits, target).item(), rel=1e-6
    )
    loss.backward()
    assert outputs["seg_logits"].grad[1].abs().max() == 0
    assert outputs["seg_logits"].grad[0].abs().max() > 0


def test_no_sample_with_a_mask_gives_an_exact_zero_that_reaches_every_parameter():
    head = _head().train()
    loss = head.loss(_outputs(head, 2), [{"label": 1}, {}], input_size=INPUT)["loss_seg"]
    assert loss.item() == 0.0
    loss.backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().max() == 0, name


def test_predict_gives_label_maps_at_the_original_size():
    head = _head().eval()
    outputs = _outputs(head, 2)
    samples = [
        {"mask": _mask(2), "meta": {"img_shape": INPUT, "ori_shape": (20, 28)}},
        {"meta": {"img_shape": (32, 56), "ori_shape": (64, 112)}},  # padded at the bottom
    ]
    predictions = head.predict(outputs, samples, input_size=INPUT)
    assert [tuple(p["pred_mask"].shape) for p in predictions] == [(20, 28), (64, 112)]
    assert predictions[0]["pred_mask"].dtype == torch.int64
    assert (
        torch.equal(predictions[0]["gt_mask"], samples[0]["mask"])
        and "gt_mask" not in predictions[1]
    )
    logits = head.postprocess(outputs, INPUT)["seg_logits"]
    assert logits.shape == (2, 4, *INPUT)
    expected = nn.functional.interpolate(
        logits[1:, :, :32], (64, 112), mode="bilinear", align_corners=False
    )
    assert torch.equal(predictions[1]["pred_mask"], expected[0].softmax(0).argmax(0))
    assert predictions[1]["pred_mask"].unique().numel() >= 2


def test_test_time_views_follow_test_cfg():
    assert _head().test_time_views == ((1.0, False),)
    views = _head(test_cfg=dict(scales=(0.5, 1.5), flip=True)).test_time_views
    assert views == ((0.5, False), (0.5, True), (1.5, False), (1.5, True))
    head = _head(test_cfg=dict(scales=(1.0,), flip=True)).eval()
    outputs = _outputs(head, 1)
    with pytest.raises(ValueError, match="predict_views needs 2 views"):
        head.predict_views([(outputs, INPUT)], [{}], INPUT)
    # The flipped view of a mirrored input mirrors back onto the plain view.
    mirrored = {"seg_logits": outputs["seg_logits"].flip(-1)}
    (both,) = head.predict_views([(outputs, INPUT), (mirrored, INPUT)], [{}], INPUT)
    (plain,) = head.predict(outputs, [{}], INPUT)
    assert torch.equal(both["pred_mask"], plain["pred_mask"])
    with pytest.raises(ValueError, match="scales"):
        _head(test_cfg=dict(scales=()))
