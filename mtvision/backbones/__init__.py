"""Backbones with named feature taps; importable without the rest of mtvision.

``mobilenetv2.py`` is the architecture and its taps; ``weights.py`` the weight
formats it loads (torchvision's layout, mtvision and converted checkpoints).
"""

from mtvision.backbones.inverted_residual import InvertedResidual
from mtvision.backbones.mobilenetv2 import MobileNetV2
from mtvision.backbones.torchvision_adapter import TorchvisionBackboneAdapter
from mtvision.backbones.weights import load_torchvision_weights, torchvision_module_map
from mtvision.layers.conv_norm_act import ConvNormAct
from mtvision.layers.feature_spec import FeatureInfo, FeatureSpec, select_specs

__all__ = [
    "ConvNormAct",
    "FeatureInfo",
    "FeatureSpec",
    "InvertedResidual",
    "MobileNetV2",
    "TorchvisionBackboneAdapter",
    "load_torchvision_weights",
    "select_specs",
    "torchvision_module_map",
]
