"""SSDLite's extra feature layers: four stride-2 blocks after the backbone's last tap."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtvision.layers.conv_norm_act import ConvNormAct
from mtvision.layers.feature_spec import FeatureSpec

DEFAULT_DEPTHS = (512, 256, 256, 128)


class SSDLiteExtras(nn.Module):
    """Extra layers of SSDLite (MobileNetV2 paper, section 6.2), built from a tap's spec:
    a part of :class:`~mtvision.heads.SSDLiteHead`.

    Block k maps (N, C_in, H, W) to (N, depths[k], ceil(H / 2), ceil(W / 2)) with
    ``1x1 ConvNormAct to depths[k] // 2 -> 3x3 depthwise ConvNormAct stride 2 ->
    1x1 ConvNormAct to depths[k]`` (BatchNorm + ReLU6 after each conv). On the
    stride-32 ``final_conv`` of a 320x320 input the blocks give 5, 3, 2, 1 maps; on a
    stride-16 one (a backbone at output stride 16) 10, 5, 3, 2.

    The depths are absolute: they stay 512, 256, 256, 128 whatever the backbone's
    width multiplier (the TF ssdlite_mobilenet_v2 config does not thin them either;
    torchvision's ``SSDLiteFeatureExtractorMobileNet`` would, with its own
    ``width_mult``). Pass other ``depths`` to change them.

    ``feature_info`` declares the outputs as :class:`FeatureSpec` named ``extra1`` ..
    ``extraK`` with ``stride = in_spec.stride * 2**k``, so a head reads their channels
    from the specs.

    Args:
        in_spec: the tap the first block reads (its name and channels).
        depths: output channels of the blocks, in order.
        padding: ``"symmetric"`` or ``"same"`` (TF's rule) for the stride-2 depthwise
            convs, see :class:`~mtvision.layers.ConvNormAct`.

    Weights: convs ~ N(0, 0.03) (torchvision's SSDLite init), BatchNorm weight 1, bias 0.
    """

    def __init__(
        self,
        in_spec: FeatureSpec,
        depths: Sequence[int] = DEFAULT_DEPTHS,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if not depths or any(depth < 2 or depth % 2 for depth in depths):
            raise ValueError(f"depths must be even numbers >= 2, got {list(depths)}")
        self.in_spec = in_spec
        blocks = []
        feature_info = []
        in_channels, stride = in_spec.channels, in_spec.stride
        for index, depth in enumerate(depths, start=1):
            hidden = depth // 2
            blocks.append(
                nn.Sequential(
                    ConvNormAct(in_channels, hidden, kernel_size=1),
                    ConvNormAct(
                        hidden, hidden, kernel_size=3, stride=2, groups=hidden, padding=padding
                    ),
                    ConvNormAct(hidden, depth, kernel_size=1),
                )
            )
            stride *= 2
            feature_info.append(FeatureSpec(f"extra{index}", depth, stride))
            in_channels = depth
        self.blocks = nn.ModuleList(blocks)
        self.feature_info: list[FeatureSpec] = feature_info
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.03)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Read ``features[in_spec.name]`` (N, C_in, H, W); return ``{"extra1": ..., "extraK": ...}``."""
        x = features[self.in_spec.name]
        outputs = {}
        for spec, block in zip(self.feature_info, self.blocks, strict=True):
            x = block(x)
            outputs[spec.name] = x
        return outputs
