"""DeepLabv3 segmentation head on one backbone tap (MobileNetV2 paper, section 6.3, Table 7)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtvision.layers.aspp import ASPP
from mtvision.layers.feature_spec import FeatureSpec
from mtvision.registry import MODELS

# DeepLabv3 states its atrous rates for output stride 16 and doubles them at 8.
RATES_OUTPUT_STRIDE = 16


@MODELS.register_module()
class DeepLabV3Head(nn.Module):
    """(Atrous) spatial pyramid pooling -> dropout -> 1x1 classifier, at the tap's stride.

    Two variants, both from Table 7 of the MobileNetV2 paper:

    - ``aspp=False`` (the paper's on-device pick): a 1x1 branch and an image-pooling
      branch, ``channels`` wide each, concatenated and projected to ``channels``.
    - ``aspp=True``: the full ASPP adds one plain 3x3 conv per atrous rate. Rates are
      given for output stride 16 and scaled by ``16 / in_spec.stride``, so a stride-8
      tap gets (12, 24, 36) from the default (6, 12, 18).

    Args:
        in_spec: the tap this head reads; its ``channels`` and ``stride`` size the head.
        num_classes: number of classes K (21 for PASCAL VOC, background included).
        channels: width of the branches and of the projection (256 in the paper).
        aspp: add the atrous 3x3 branches.
        atrous_rates: dilations at output stride 16; used only with ``aspp=True``.
        dropout: element-wise dropout probability before the classifier (TF-DeepLab:
            keep_prob 0.9).
        padding: ``"symmetric"`` or ``"same"`` (TF) for the ASPP's convs.
    """

    def __init__(
        self,
        in_spec: FeatureSpec,
        num_classes: int,
        channels: int = 256,
        aspp: bool = False,
        atrous_rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_spec = in_spec
        self.num_classes = num_classes
        rates = self.scaled_atrous_rates(atrous_rates, in_spec.stride) if aspp else ()
        self.aspp = ASPP(in_spec.channels, channels, rates, padding=padding)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        self._init_weights()

    @staticmethod
    def scaled_atrous_rates(rates: Sequence[int], stride: int) -> tuple[int, ...]:
        """Rates stated at output stride 16, rescaled to a tap of ``stride``."""
        scaled = []
        for rate in rates:
            if (rate * RATES_OUTPUT_STRIDE) % stride:
                raise ValueError(
                    f"atrous rate {rate} (at output stride {RATES_OUTPUT_STRIDE}) does not scale "
                    f"to an integer at the tap's stride {stride}"
                )
            scaled.append(rate * RATES_OUTPUT_STRIDE // stride)
        return tuple(scaled)

    def _init_weights(self) -> None:
        # Private name on purpose: mmengine calls a child's public ``init_weights()``
        # and would wipe weights loaded before the runner starts.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Small initial logits: the first loss is close to log(K) for every pixel.
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """``features[in_spec.name]`` (N, C, h, w) -> ``{"seg_logits": (N, K, h, w)}``.

        ``h, w`` = ceil(H / stride), ceil(W / stride) of the (H, W) network input; the
        model upsamples the logits to the input size.
        """
        x = self.aspp(features[self.in_spec.name])
        return {"seg_logits": self.classifier(self.dropout(x))}
