"""Building blocks shared by backbones and heads: feature specs, conv-norm-activation, ASPP."""

from mtvision.layers.aspp import ASPP, ImagePooling
from mtvision.layers.conv_norm_act import ConvNormAct
from mtvision.layers.feature_spec import FeatureInfo, FeatureSpec, select_specs
from mtvision.layers.separable_conv import SeparableConvNormAct

__all__ = [
    "ASPP",
    "ConvNormAct",
    "FeatureInfo",
    "FeatureSpec",
    "ImagePooling",
    "SeparableConvNormAct",
    "select_specs",
]
