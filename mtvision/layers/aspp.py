"""Atrous Spatial Pyramid Pooling (Chen et al., DeepLabv3, arXiv:1706.05587, section 3.3).

Parallel branches over one feature map, concatenated and projected back to
``out_channels``: a 1x1 conv, one 3x3 conv per atrous rate, and an image-pooling
branch that adds global context. With no atrous rates this is the MobileNetV2
paper's on-device DeepLabv3 head (section 6.3): 1x1 branch + image pooling only.

Every conv is bias-free and followed by ``nn.BatchNorm2d`` with PyTorch's defaults
(eps 1e-5, momentum 0.1) and ReLU. TF-DeepLab uses the same eps and a decay of
0.9997 (momentum 3e-4), which only suits its 30k+ step schedules; momentum 0.1 is
what the backbone's BNs use and lets running statistics settle in short runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtvision.layers.conv_norm_act import ConvNormAct


class ImagePooling(nn.Module):
    """Global average pool -> 1x1 conv + BN + ReLU -> broadcast back to the input size.

    (N, C_in, H, W) -> (N, C_out, H, W), constant over H and W: a bilinear resize of
    the 1x1 map (``align_corners=True``, as TF DeepLab), which is that constant. Not
    ``expand``: LiteRT lowers it to a ``BROADCAST_TO`` whose output shape its runtime
    refuses to load ("Output shape must be broadcastable"), where a resize converts.

    Its BatchNorm sees one value per image and channel, so in training mode it needs
    a batch of at least two images.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # TF-DeepLab pools with a fixed kernel of the crop's feature size (33x33 at 513),
        # which is this global average at that size.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvNormAct(in_channels, out_channels, kernel_size=1, activation="relu")

    def forward(self, x: Tensor) -> Tensor:
        batch_norm = self.conv.bn
        if batch_norm.training and x.shape[0] < 2:
            raise ValueError(
                "the image-pooling branch's BatchNorm normalises one pooled value per image and "
                f"needs a batch of >= 2 images in training mode, got input {tuple(x.shape)}; "
                "train with batch_size >= 2 or keep the head's BatchNorms in eval mode"
            )
        pooled = self.conv(self.pool(x))
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel branches -> concat -> 1x1 projection.

    Branches (each ``out_channels`` wide, conv + BN + ReLU): a 1x1 conv, a 3x3 conv
    with dilation ``rate`` for each of ``atrous_rates`` (plain, not depthwise
    separable), and :class:`ImagePooling`. The concatenation of the B branches,
    (N, B * out_channels, H, W), is projected by a 1x1 conv + BN + ReLU.

    Args:
        in_channels: C_in of the (N, C_in, H, W) input.
        out_channels: width of every branch and of the (N, out_channels, H, W) output.
        atrous_rates: dilations of the 3x3 branches; empty for the on-device head.
        padding: ``"symmetric"`` or ``"same"`` (TF) for the convs, see
            :class:`ConvNormAct`; the branches are stride 1 with odd kernels, where
            both rules pad the same, so it only documents where the weights came from.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        atrous_rates: Sequence[int] = (),
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.atrous_rates = tuple(int(rate) for rate in atrous_rates)
        if any(rate < 1 for rate in self.atrous_rates):
            raise ValueError(f"atrous rates must be >= 1, got {self.atrous_rates}")
        branches: list[nn.Module] = [
            ConvNormAct(in_channels, out_channels, kernel_size=1, activation="relu")
        ]
        branches += [
            ConvNormAct(
                in_channels,
                out_channels,
                kernel_size=3,
                dilation=rate,
                activation="relu",
                padding=padding,
            )
            for rate in self.atrous_rates
        ]
        branches.append(ImagePooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = ConvNormAct(
            len(branches) * out_channels, out_channels, kernel_size=1, activation="relu"
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, out_channels, H, W)."""
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))
