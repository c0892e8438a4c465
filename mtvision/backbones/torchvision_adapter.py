"""Present a MobileNetV2 to torchvision's detection models (FasterRCNN, RetinaNet, ...)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from mtvision.backbones.mobilenetv2 import MobileNetV2
from mtvision.layers.feature_spec import FeatureSpec


class TorchvisionBackboneAdapter(nn.Module):
    """Backbone taps as the ``OrderedDict[str, Tensor]`` torchvision detectors expect.

    Without ``fpn_channels`` exactly one tap is returned (a single-map FasterRCNN),
    and ``out_channels`` is that tap's channel count. With ``fpn_channels`` the taps
    go through ``torchvision.ops.FeaturePyramidNetwork`` with a ``LastLevelMaxPool``
    extra level (key ``"pool"``), and every output has ``fpn_channels`` channels.
    Channel counts are read from the backbone's ``feature_info``.

    The adapter owns the backbone: it sets ``backbone.out_features`` to ``out_features``.

    Args:
        backbone: the MobileNetV2 to wrap.
        out_features: tap names, shallow to deep (strides must not decrease).
        fpn_channels: FPN width, or ``None`` for a single map without FPN.
    """

    def __init__(
        self,
        backbone: MobileNetV2,
        out_features: Sequence[str],
        fpn_channels: int | None = None,
    ) -> None:
        super().__init__()
        names = tuple(out_features)
        unknown = [name for name in names if name not in backbone.feature_info]
        if not names or unknown:
            raise ValueError(
                f"out_features must be spatial taps of the backbone, got {list(names)}; "
                f"available: {list(backbone.feature_info.names)}"
            )
        if fpn_channels is None and len(names) != 1:
            raise ValueError(
                f"without fpn_channels the adapter returns exactly one map, got {list(names)}"
            )
        specs = backbone.feature_info.select(names)
        strides = [spec.stride for spec in specs]
        if strides != sorted(strides):
            raise ValueError(
                f"out_features must go from shallow to deep for the FPN, got strides {strides} "
                f"for {list(names)}"
            )
        backbone.set_out_features(names)
        self.backbone = backbone
        self.feature_specs: list[FeatureSpec] = specs
        self.fpn: FeaturePyramidNetwork | None = None
        if fpn_channels is None:
            self.out_channels = specs[0].channels
        else:
            self.fpn = FeaturePyramidNetwork(
                [spec.channels for spec in specs], fpn_channels, extra_blocks=LastLevelMaxPool()
            )
            self.out_channels = fpn_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """(N, 3, H, W) -> OrderedDict of (N, out_channels, h, w) maps, shallow to deep.

        Keys are the tap names, plus ``"pool"`` (stride doubled again) with FPN.
        """
        taps = self.backbone(images)
        features = OrderedDict((spec.name, taps[spec.name]) for spec in self.feature_specs)
        if self.fpn is None:
            return features
        return self.fpn(features)
