"""SSDLite's predictors: structure, ordering, and shapes behind a backbone and the extras."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtvision.backbones import MobileNetV2
from mtvision.heads.ssdlite_extras import SSDLiteExtras
from mtvision.heads.ssdlite_predictors import SSDLitePredictors, _flatten_level
from mtvision.layers import FeatureSpec
from mtvision.utils.complexity import count_parameters

TAPS = ("layer15_expansion", "final_conv")


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def test_prediction_block_structure_and_parameter_count() -> None:
    predictors = SSDLitePredictors([FeatureSpec("a", 8, 16)], num_anchors=[2], num_class_logits=3)
    depthwise, pointwise = predictors.cls_predictors[0]
    assert depthwise.conv.groups == 8 and depthwise.conv.kernel_size == (3, 3)
    assert isinstance(depthwise.bn, nn.BatchNorm2d) and isinstance(depthwise.act, nn.ReLU6)
    assert pointwise.kernel_size == (1, 1) and pointwise.bias is not None
    # cls: depthwise 8*9 + BN 2*8 + pointwise 8*(2*3) + 6; box: 8*9 + 16 + 8*(2*4) + 8.
    assert count_parameters(predictors) == (72 + 16 + 48 + 6) + (72 + 16 + 64 + 8)


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
def backbone_extras_predictors():
    torch.manual_seed(0)
    backbone = MobileNetV2(width_mult=0.35, out_features=TAPS).eval()
    extras = SSDLiteExtras(backbone.feature_info[-1]).eval()
    specs = [*(s for s in backbone.feature_info if s.name in TAPS), *extras.feature_info]
    predictors = SSDLitePredictors(specs, ANCHORS_PER_CELL, num_class_logits=7).eval()
    return backbone, extras, predictors


@pytest.mark.parametrize("image_size", [(320, 320), (256, 256), (300, 300), (384, 384), (256, 384)])
def test_backbone_extras_predictors_shapes(backbone_extras_predictors, image_size) -> None:
    backbone, extras, predictors = backbone_extras_predictors
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, *image_size))
        features.update(extras(features))
        outputs = predictors(features)
    num_anchors = 0
    for spec, per_cell in zip(predictors.in_specs, ANCHORS_PER_CELL, strict=True):
        expected = tuple(math.ceil(side / spec.stride) for side in image_size)
        assert features[spec.name].shape == (1, spec.channels, *expected)
        num_anchors += expected[0] * expected[1] * per_cell
    assert outputs["cls_logits"].shape == (1, num_anchors, 7)
    assert outputs["bbox_regression"].shape == (1, num_anchors, 4)
    if image_size == (320, 320):
        sizes = [features[spec.name].shape[-1] for spec in predictors.in_specs]
        assert sizes == [20, 10, 5, 3, 2, 1] and num_anchors == 2034


def test_predictors_check_anchor_counts() -> None:
    with pytest.raises(ValueError, match="one anchor count per feature map"):
        SSDLitePredictors([FeatureSpec("a", 8, 16)], num_anchors=[2, 2], num_class_logits=3)
