"""The MobileNetV2 inverted residual block, which exposes its own expansion output."""

from __future__ import annotations

from torch import Tensor, nn

from mtvision.layers.conv_norm_act import ConvNormAct

#: A block's inner outputs, in the order they are computed.
PARTS = ("expansion", "depthwise")


class ResidualAdd(nn.Module):
    """``x + out``, the shortcut sum, as a module so that forward hooks can see it
    (:mod:`mtvision.convert.int8_emulation` rounds it as the int8 ``ADD`` does; PyTorch's
    ``FloatFunctional`` exists for the same reason). No parameters."""

    def forward(self, x: Tensor, out: Tensor) -> Tensor:
        return x + out


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), plus identity shortcut.

    ``expand`` is a 1x1 ConvNormAct to ``round(in_channels * expand_ratio)`` channels
    (absent when ``expand_ratio == 1``), ``depthwise`` a 3x3 depthwise ConvNormAct
    carrying the block's stride and dilation, ``project`` a 1x1 conv + BN without
    activation (the paper's linear bottleneck). The shortcut is added when the block
    keeps both spatial size and channel count.

    Two inner outputs are taps of their own (:data:`PARTS`): the expansion (after the
    expand layer's ReLU6, before the depthwise conv; SSDLite's first prediction layer
    reads it from the first block of the 160-channel stage) and the depthwise output
    (after its ReLU6, before the projection; DeepLabv3+'s decoder reads it from the
    second block of the 24-channel stage, TF-DeepLab's ``layer_4/depthwise_output``).
    :meth:`forward_parts` returns them next to the block output, so nobody has to
    slice into the block from outside.

    ``expansion_channels`` and ``out_channels`` give the widths of the two outputs.

    Args:
        in_channels: C_in of the (N, C_in, H, W) input.
        out_channels: C_out of the output.
        stride: 1 or 2, applied by the depthwise conv.
        expand_ratio: t in the paper's Table 2.
        dilation: atrous rate of the depthwise conv (padding equals it).
        padding: ``"symmetric"`` or ``"same"`` (TF), see :class:`ConvNormAct`; only the
            depthwise conv can differ.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        dilation: int = 1,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden_channels = int(round(in_channels * expand_ratio))
        self.expansion_channels = hidden_channels
        self.out_channels = out_channels
        self.expand: ConvNormAct | None = (
            ConvNormAct(in_channels, hidden_channels, kernel_size=1) if expand_ratio != 1 else None
        )
        self.depthwise: ConvNormAct | None = ConvNormAct(
            hidden_channels,
            hidden_channels,
            kernel_size=3,
            stride=stride,
            dilation=dilation,
            groups=hidden_channels,
            padding=padding,
        )
        self.project: ConvNormAct | None = ConvNormAct(
            hidden_channels, out_channels, kernel_size=1, activation=None
        )
        self.use_residual = stride == 1 and in_channels == out_channels
        self.residual_add = ResidualAdd()

    def cut_after(self, part: str) -> tuple[str, ...]:
        """Drop the layers after ``part`` (one of :data:`PARTS`); returns their names.

        A backbone cut at an inner tap keeps no later module; afterwards only
        :meth:`forward_parts` runs (and returns no ``"out"``).
        """
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        dropped = ("depthwise", "project") if part == "expansion" else ("project",)
        for name in dropped:
            setattr(self, name, None)
        return dropped

    def cut_after_expansion(self) -> tuple[str, ...]:
        """Drop the depthwise and projection layers (:meth:`cut_after` ``"expansion"``)."""
        return self.cut_after("expansion")

    def forward_expansion(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> expansion tap (N, expansion_channels, H, W); the input itself when t == 1."""
        return x if self.expand is None else self.expand(x)

    def forward_parts(self, x: Tensor) -> dict[str, Tensor]:
        """(N, C_in, H, W) -> ``{"expansion": (N, expansion_channels, H, W), "depthwise":
        (N, expansion_channels, H', W'), "out": (N, C_out, H', W')}`` with H' = ceil(H /
        stride); a block cut by :meth:`cut_after` returns the parts it still computes."""
        parts = {"expansion": self.forward_expansion(x)}
        if self.depthwise is None:
            return parts
        parts["depthwise"] = self.depthwise(parts["expansion"])
        if self.project is None:
            return parts
        out = self.project(parts["depthwise"])
        parts["out"] = self.residual_add(x, out) if self.use_residual else out
        return parts

    def forward(self, x: Tensor, return_expansion: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)).

        With ``return_expansion=True`` returns ``(out, expansion)``, ``expansion`` being
        (N, expansion_channels, H, W).
        """
        if self.depthwise is None or self.project is None:
            raise RuntimeError(
                "this block was cut after its expansion or depthwise conv; only forward_parts runs"
            )
        expansion = self.forward_expansion(x)
        out = self.project(self.depthwise(expansion))
        if self.use_residual:
            out = self.residual_add(x, out)
        if return_expansion:
            return out, expansion
        return out
