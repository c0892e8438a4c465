"""SSDLite's prediction layers: per-level depthwise-separable class and box predictors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtvision.layers.conv_norm_act import ConvNormAct
from mtvision.layers.feature_spec import FeatureSpec


def _prediction_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """SSDLite's replacement of SSD's 3x3 prediction conv: 3x3 depthwise
    ConvNormAct (BN + ReLU6) -> 1x1 conv with bias, no norm or activation."""
    return nn.Sequential(
        ConvNormAct(in_channels, in_channels, kernel_size=3, groups=in_channels),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def _flatten_level(prediction: Tensor, values_per_anchor: int) -> Tensor:
    """(N, A * V, H, W) -> (N, H * W * A, V): location-major, anchor fastest, like the anchors."""
    batch, _, height, width = prediction.shape
    prediction = prediction.reshape(batch, -1, values_per_anchor, height, width)
    return prediction.permute(0, 3, 4, 1, 2).reshape(batch, -1, values_per_anchor)


class SSDLitePredictors(nn.Module):
    """Class and box predictors on every feature map, built from their specs: a part of
    :class:`~mtvision.heads.SSDLiteHead`.

    For each level l (a :class:`FeatureSpec` with C_l channels and A_l anchors per
    cell) there is one classification block (C_l -> A_l * K) and one regression
    block (C_l -> A_l * 4), each a depthwise 3x3 + BN + ReLU6 followed by a
    pointwise 1x1 conv with bias.

    Args:
        in_specs: the feature maps to predict on, in anchor order (lowest level first).
        num_anchors: anchors per cell A_l, one per spec.
        num_class_logits: class scores per anchor K (the detector's foreground
            classes plus one background column for softmax, or just the
            foreground classes for sigmoid/focal scoring).

    ``forward(features)`` reads ``features[spec.name]`` (N, C_l, H_l, W_l) and returns
    ``{"cls_logits": (N, sum_l H_l * W_l * A_l, K), "bbox_regression": (N, same, 4)}``,
    rows ordered level by level, then row-major over cells, then anchor.

    Weights: convs ~ N(0, 0.03), biases 0 (torchvision's SSDLite init).
    """

    def __init__(
        self, in_specs: Sequence[FeatureSpec], num_anchors: Sequence[int], num_class_logits: int
    ) -> None:
        super().__init__()
        if len(in_specs) != len(num_anchors):
            raise ValueError(
                f"one anchor count per feature map needed: {len(in_specs)} specs "
                f"({[spec.name for spec in in_specs]}) but num_anchors={list(num_anchors)}"
            )
        if num_class_logits < 1:
            raise ValueError(f"num_class_logits must be >= 1, got {num_class_logits}")
        self.in_specs = list(in_specs)
        self.num_anchors = list(num_anchors)
        self.num_class_logits = num_class_logits
        self.cls_predictors = nn.ModuleList(
            _prediction_block(spec.channels, anchors * num_class_logits)
            for spec, anchors in zip(in_specs, num_anchors, strict=True)
        )
        self.bbox_predictors = nn.ModuleList(
            _prediction_block(spec.channels, anchors * 4)
            for spec, anchors in zip(in_specs, num_anchors, strict=True)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.03)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        cls_logits, bbox_regression = [], []
        for spec, cls_block, bbox_block in zip(
            self.in_specs, self.cls_predictors, self.bbox_predictors, strict=True
        ):
            x = features[spec.name]
            cls_logits.append(_flatten_level(cls_block(x), self.num_class_logits))
            bbox_regression.append(_flatten_level(bbox_block(x), 4))
        return {
            "cls_logits": torch.cat(cls_logits, dim=1),
            "bbox_regression": torch.cat(bbox_regression, dim=1),
        }
