"""SSDLite's extra layers: structure, specs, halving with ceil."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtvision.heads.ssdlite_extras import SSDLiteExtras
from mtvision.layers import FeatureSpec
from mtvision.utils.complexity import count_parameters

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


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
