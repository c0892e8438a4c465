"""Backbones with named feature taps; importable without the rest of mtvision."""

from mtvision.backbones.inverted_residual import InvertedResidual
from mtvision.backbones.mobilenetv2 import MobileNetV2
from mtvision.backbones.torchvision_adapter import TorchvisionBackboneAdapter
from mtvision.layers.conv_norm_act import ConvNormAct
from mtvision.layers.feature_spec import FeatureSpec, select_specs

__all__ = [
    "ConvNormAct",
    "FeatureSpec",
    "InvertedResidual",
    "MobileNetV2",
    "TorchvisionBackboneAdapter",
    "select_specs",
]
