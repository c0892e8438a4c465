"""Depthwise-separable convolution: a depthwise k x k ConvNormAct then a 1x1 ConvNormAct
(MobileNet's factorisation; DeepLabv3+'s decoder, Chen et al. 2018, section 3.2)."""

from __future__ import annotations

from torch import Tensor, nn

from mtvision.layers.conv_norm_act import ConvNormAct


class SeparableConvNormAct(nn.Module):
    """``depthwise`` (k x k, groups = C_in, BN, activation) -> ``pointwise`` (1x1, BN,
    activation), as TF-DeepLab's ``split_separable_conv2d`` and mmseg's
    ``DepthwiseSeparableConvModule`` (both with a BatchNorm and a ReLU after each conv).

    (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)).

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: the depthwise kernel (3 in DeepLabv3+).
        dilation: the depthwise conv's atrous rate.
        activation: after both convs (``"relu"``: DeepLab's).
        padding: ``"symmetric"`` or ``"same"`` (TF), see :class:`ConvNormAct`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        activation: str | None = "relu",
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(
            in_channels,
            in_channels,
            kernel_size,
            dilation=dilation,
            groups=in_channels,
            activation=activation,
            padding=padding,
        )
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, activation=activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))
