"""SSDLite extras and prediction head: structure, specs, shapes at several input sizes, ordering."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtvision.backbones import FeatureSpec, MobileNetV2
from mtvision.heads.ssdlite_extras import SSDLiteExtras
from mtvision.heads.ssdlite_head import SSDLiteHead, _flatten_level
from mtvision.utils.complexity import count_parameters

TAPS = ("layer15_expansion", "final_conv")


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    # Tiny convolutions: two threads on a busy two-core machine wait on each other's
    # time slices (see tests/test_ssdlite.py); one thread is many times faster there.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_extras_structure_and_specs() -> None:
    extras = SSDLiteExtras(FeatureSpec("final_conv", 1280, 32))
    assert [spec.name for spec in extras.feature_info] == ["extra1", "extra2", "extra3", "extra4"]
    assert [spec.channels for spec in extras.feature_info] == [512, 256, 256, 128]
    assert [spec.stride for spec in extras.feature_info] == [64, 128, 256, 512]
    first = extras.blocks[0]
    reduce, depthwise, expand = first[0].conv, first[1].conv, first[2].conv
    assert (reduce.in_channels, reduce.out_channels, reduce.kernel_size) == (1280, 256, (1, 1))
    assert (depthwise.groups, depthwise.kernel_size, depthwise.stride) == (256, (3, 3), (2, 2))
    assert (expand.in_channels, expand.out_channels, expand.kernel_size) == (256, 512, (1, 1))
    for layer in first:
        assert isinstance(layer.bn, nn.BatchNorm2d) and isinstance(layer.act, nn.ReLU6)
    # By hand: 1280*256 + 2*256 (BN), 256*9 + 2*256, 256*512 + 2*512 for the first block.
    assert count_parameters(first) == 1280 * 256 + 512 + 256 * 9 + 512 + 256 * 512 + 1024


@pytest.mark.parametrize("size", [10, 8, 7, 1])
def test_extras_halve_with_ceil(size: int) -> None:
    extras = SSDLiteExtras(FeatureSpec("x", 16, 32), depths=(32, 16, 16, 8)).eval()
    outputs = extras({"x": torch.randn(2, 16, size, size + 3)})
    height, width = size, size + 3
    for spec in extras.feature_info:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
        assert outputs[spec.name].shape == (2, spec.channels, height, width)


def test_extras_reject_odd_depths() -> None:
    with pytest.raises(ValueError, match="even"):
        SSDLiteExtras(FeatureSpec("x", 16, 32), depths=(31,))


def test_prediction_block_structure_and_parameter_count() -> None:
    head = SSDLiteHead([FeatureSpec("a", 8, 16)], num_anchors=[2], num_class_logits=3)
    depthwise, pointwise = head.cls_predictors[0]
    assert depthwise.conv.groups == 8 and depthwise.conv.kernel_size == (3, 3)
    assert isinstance(depthwise.bn, nn.BatchNorm2d) and isinstance(depthwise.act, nn.ReLU6)
    assert pointwise.kernel_size == (1, 1) and pointwise.bias is not None
    # cls: depthwise 8*9 + BN 2*8 + pointwise 8*(2*3) + 6; box: 8*9 + 16 + 8*(2*4) + 8.
    assert count_parameters(head) == (72 + 16 + 48 + 6) + (72 + 16 + 64 + 8)


def test_flatten_level_orders_location_major_anchor_fastest() -> None:
    anchors, values, height, width = 2, 3, 2, 4
    # Encode (anchor, value, row, column) in each entry of an (N, A * V, H, W) map.
    a, v, y, x = torch.meshgrid(
        torch.arange(anchors),
        torch.arange(values),
        torch.arange(height),
        torch.arange(width),
        indexing="ij",
    )
    prediction = (1000 * a + 100 * v + 10 * y + x).reshape(1, anchors * values, height, width)
    flat = _flatten_level(prediction, values)
    assert flat.shape == (1, height * width * anchors, values)
    row = (1 * width + 2) * anchors + 1  # cell (1, 2), anchor 1
    assert flat[0, row].tolist() == [1000 + 12, 1100 + 12, 1200 + 12]


ANCHORS_PER_CELL = [3, 6, 6, 6, 6, 6]


@pytest.fixture(scope="module")
def backbone_extras_head():
    torch.manual_seed(0)
    backbone = MobileNetV2(width_mult=0.35, out_features=TAPS).eval()
    extras = SSDLiteExtras(backbone.feature_info[-1]).eval()
    specs = [*(s for s in backbone.feature_info if s.name in TAPS), *extras.feature_info]
    head = SSDLiteHead(specs, ANCHORS_PER_CELL, num_class_logits=7).eval()
    return backbone, extras, head


@pytest.mark.parametrize("image_size", [(320, 320), (256, 256), (300, 300), (384, 384), (256, 384)])
def test_backbone_extras_head_shapes(backbone_extras_head, image_size) -> None:
    backbone, extras, head = backbone_extras_head
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, *image_size))
        features.update(extras(features))
        outputs = head(features)
    num_anchors = 0
    for spec, per_cell in zip(head.in_specs, ANCHORS_PER_CELL, strict=True):
        expected = tuple(math.ceil(side / spec.stride) for side in image_size)
        assert features[spec.name].shape == (1, spec.channels, *expected)
        num_anchors += expected[0] * expected[1] * per_cell
    assert outputs["cls_logits"].shape == (1, num_anchors, 7)
    assert outputs["bbox_regression"].shape == (1, num_anchors, 4)
    if image_size == (320, 320):
        sizes = [features[spec.name].shape[-1] for spec in head.in_specs]
        assert sizes == [20, 10, 5, 3, 2, 1] and num_anchors == 2034


def test_head_checks_anchor_counts() -> None:
    with pytest.raises(ValueError, match="one anchor count per feature map"):
        SSDLiteHead([FeatureSpec("a", 8, 16)], num_anchors=[2, 2], num_class_logits=3)
