"""Conv2d -> BatchNorm2d -> activation: the unit every MobileNetV2, SSDLite and DeepLab layer is made of."""

from __future__ import annotations

from torch import Tensor, nn

from mtvision.layers.same_padding import PADDING_MODES, SamePad2d, needs_dynamic_padding

#: Activations by name; ``None`` is the paper's linear bottleneck (no activation).
ACTIVATIONS: dict[str | None, type[nn.Module]] = {
    "relu6": nn.ReLU6,
    "relu": nn.ReLU,
    None: nn.Identity,
}


class ConvNormAct(nn.Module):
    """A bias-free ``Conv2d`` followed by ``BatchNorm2d`` and an activation.

    With the default ``padding="symmetric"`` the conv pads ``dilation * (kernel_size - 1)
    // 2`` on every side, so a stride-1 layer keeps the spatial size and a stride-2
    layer maps H to ceil(H / 2) for odd kernels. ``padding="same"`` pads as TensorFlow
    does (:mod:`mtvision.layers.same_padding`): same output sizes, but a stride-2 layer
    on an even input pads 0 before and 1 after; it is what weights converted from TF
    need. Where TF's rule does not depend on the input size (stride 1, odd kernel) it
    is the symmetric padding and nothing changes.

    Submodules are named ``conv``, ``bn`` and ``act``, whatever the activation, so
    weight mappings (torchvision, converted files) address one layout.

    Args:
        in_channels: C_in of the (N, C_in, H, W) input.
        out_channels: C_out of the (N, C_out, H', W') output.
        kernel_size: square kernel size.
        stride: convolution stride.
        dilation: convolution dilation (atrous rate).
        groups: ``in_channels`` for a depthwise convolution.
        activation: ``"relu6"`` (MobileNetV2, SSDLite), ``"relu"`` (DeepLab's
            ASPP) or ``None`` for the paper's linear bottleneck projection
            (``act`` is then an ``nn.Identity``).
        padding: ``"symmetric"`` (PyTorch) or ``"same"`` (TensorFlow); with
            ``"same"`` and a size-dependent amount, ``pad`` is a :class:`SamePad2d`
            run before ``conv`` (no parameters, so the state dict is unchanged).

    Raises:
        ValueError: an unknown ``activation`` or ``padding`` name.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        activation: str | None = "relu6",
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {list(PADDING_MODES)}, got {padding!r}")
        dynamic = padding == "same" and needs_dynamic_padding(kernel_size, stride, dilation)
        self.pad = SamePad2d(kernel_size, stride, dilation) if dynamic else None
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0 if dynamic else dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act: nn.Module = ACTIVATIONS[activation](inplace=True) if activation else nn.Identity()

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))."""
        if self.pad is not None:
            x = self.pad(x)
        return self.act(self.bn(self.conv(x)))
