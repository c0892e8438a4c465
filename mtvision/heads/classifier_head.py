"""Image classification head: global average pool -> dropout -> linear."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtvision.layers.feature_spec import FeatureSpec
from mtvision.registry import MODELS


@MODELS.register_module()
class ClassifierHead(nn.Module):
    """Classify from one backbone tap, as in the paper's Table 2 (avgpool, 1x1 conv to k classes).

    The 1x1 convolution on a 1x1 pooled map is a linear layer; it is named
    ``fc`` so its weights map one to one onto torchvision's ``classifier.1``.

    Args:
        in_spec: the tap this head reads (its ``channels`` size the linear layer).
        num_classes: number of output classes K.
        dropout: dropout probability before the linear layer (torchvision: 0.2).
    """

    def __init__(self, in_spec: FeatureSpec, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_spec = in_spec
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_spec.channels, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map ``features[in_spec.name]`` of shape (N, C, H, W) to ``{"cls_logits": (N, K)}``."""
        x = self.pool(features[self.in_spec.name])
        x = torch.flatten(x, 1)
        return {"cls_logits": self.fc(self.dropout(x))}
