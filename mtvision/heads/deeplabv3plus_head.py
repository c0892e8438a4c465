"""DeepLabv3+ segmentation head (Chen et al., ECCV 2018, arXiv:1802.02611): DeepLabv3's ASPP
on a deep tap as encoder, and a decoder that fuses the upsampled encoder output with a
low-level, stride-4 tap through depthwise-separable 3x3 convolutions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtvision.errors import ConfigError
from mtvision.heads.deeplabv3_head import DeepLabV3Head, _test_time_views, upsample
from mtvision.layers.aspp import ASPP
from mtvision.layers.conv_norm_act import ConvNormAct
from mtvision.layers.feature_spec import FeatureInfo, FeatureSpec
from mtvision.layers.separable_conv import SeparableConvNormAct
from mtvision.ops.resize import resize_asymmetric
from mtvision.registry import MODELS
from mtvision.tasks import SEGMENTATION

#: The decoder's tap must be finer than the encoder's by at least this factor.
MIN_STRIDE_RATIO = 2


@MODELS.register_module()
class DeepLabV3PlusHead(DeepLabV3Head):
    """ASPP on the encoder tap -> upsample to the low-level tap -> concat with a 1x1
    projection of it -> two separable 3x3 convs -> dropout -> 1x1 classifier, at the
    low-level tap's stride.

    Layers, as TF-DeepLab builds them (``model.py``, ``refine_by_decoder``) and as
    Google's MobileNetV2 DeepLabv3+ files hold them:

    - encoder: :class:`~mtvision.layers.ASPP` (``aspp=False``: the 1x1 and image-pooling
      branches, the on-device head of the MobileNetV2 paper and of Google's MLPerf file;
      ``aspp=True``: plus one plain 3x3 branch per atrous rate, rates stated at output
      stride 16 and scaled by ``16 / stride``), ``channels`` wide;
    - ``low_level``: 1x1 conv + BN + ReLU of the low-level tap to ``low_level_channels``
      (48 in the paper, which found fewer channels better than more, Table 1);
    - ``decoder``: the encoder output upsampled bilinearly to the low-level tap's size,
      concatenated before the projected low-level map (that order), then two
      :class:`~mtvision.layers.SeparableConvNormAct` 3x3 of ``decoder_channels``
      (TF-DeepLab's ``decoder_use_separable_conv``, mmseg's
      ``DepthwiseSeparableASPPHead``'s ``sep_bottleneck``);
    - dropout and the 1x1 ``classifier`` (with bias) to K classes.

    Loss, post-processing, test-time views, ``deploy`` and the mapping to the original
    image are :class:`DeepLabV3Head`'s (this class extends it), on logits at the
    low-level tap's stride.

    Args:
        feature_info: the backbone's taps; the head selects ``in_features`` from them.
        num_classes: number of classes K.
        channels: width of the ASPP branches and of its projection (256).
        aspp: add the atrous 3x3 branches to the encoder.
        atrous_rates: dilations at output stride 16; used only with ``aspp=True``.
        low_level_channels: width of the low-level projection (48).
        decoder_channels: width of the two separable convs (256).
        dropout: element-wise dropout probability before the classifier.
        ignore_index: mask value that is neither trained nor predicted.
        test_cfg: ``dict(scales=(1.0,), flip=False)``, as :class:`DeepLabV3Head`.
        in_features: ``(encoder tap, low-level tap)``; default ``("stage7",
            "layer4_depthwise")``: MobileNetV2's 320-channel map and the 144-channel
            depthwise output of the second block of the 24-channel stage at stride 4,
            TF-DeepLab's ``layer_4/depthwise_output``.
        padding: ``"symmetric"`` or ``"same"`` (TF) for the 3x3 convs.
        align_corners: bilinear rule of the resizes to ``meta["ori_shape"]`` and to the
            test-time scales, and, unless ``tf_legacy_resize``, of the two in-graph
            upsamplings (see :class:`DeepLabV3Head`).
        tf_legacy_resize: the two in-graph upsamplings (encoder output to the low-level
            size, logits to the input size) follow TF1's ``ResizeBilinear`` with
            ``align_corners=False, half_pixel_centers=False``
            (:func:`~mtvision.ops.resize.resize_asymmetric`), as Google's MLPerf
            DeepLabv3+ file resizes.
        init_cfg: mmengine initialisation config.

    Raises:
        ConfigError: ``in_features`` names a tap the backbone does not have (the
            message lists the taps there are), or the low-level tap is not finer than
            the encoder tap.

    Contract: :class:`DeepLabV3Head`'s, with ``seg_logits`` (N, K, h, w) at the
    low-level tap's stride.
    """

    task = SEGMENTATION
    in_features: tuple[str, ...] = ("stage7", "layer4_depthwise")

    def __init__(
        self,
        feature_info: Sequence[FeatureSpec],
        num_classes: int,
        channels: int = 256,
        aspp: bool = False,
        atrous_rates: Sequence[int] = (6, 12, 18),
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        dropout: float = 0.1,
        ignore_index: int = 255,
        test_cfg: dict | None = None,
        in_features: Sequence[str] | None = None,
        padding: str = "symmetric",
        align_corners: bool = False,
        tf_legacy_resize: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        # DeepLabV3Head's layers are not built (Head's __init__, not its): only its
        # behaviour is shared.
        super(DeepLabV3Head, self).__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        FeatureInfo(feature_info).check_known(
            in_features or type(self).in_features, "in_features of DeepLabV3PlusHead"
        )
        self.encoder_spec, self.low_level_spec = self.select_taps(feature_info, in_features, 2)
        if self.encoder_spec.stride < MIN_STRIDE_RATIO * self.low_level_spec.stride:
            raise ConfigError(
                f"DeepLabV3PlusHead: the low-level tap {self.low_level_spec.name!r} (stride "
                f"{self.low_level_spec.stride}) must be finer than the encoder tap "
                f"{self.encoder_spec.name!r} (stride {self.encoder_spec.stride}) by "
                f">= {MIN_STRIDE_RATIO}x; in_features is (encoder tap, low-level tap)"
            )
        self.in_spec = self.low_level_spec  # the stride of the logits
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.align_corners = bool(align_corners)
        self.tf_legacy_resize = bool(tf_legacy_resize)
        self.test_time_views = _test_time_views(test_cfg)
        rates = self.scaled_atrous_rates(atrous_rates, self.encoder_spec.stride) if aspp else ()
        self.aspp = ASPP(self.encoder_spec.channels, channels, rates, padding=padding)
        self.low_level = ConvNormAct(
            self.low_level_spec.channels, low_level_channels, kernel_size=1, activation="relu"
        )
        self.decoder = nn.Sequential(
            SeparableConvNormAct(channels + low_level_channels, decoder_channels, padding=padding),
            SeparableConvNormAct(decoder_channels, decoder_channels, padding=padding),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, kernel_size=1)
        self._init_weights()

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``features`` with the encoder tap (N, C_e, h_e, w_e) and the low-level tap
        (N, C_l, h, w) -> ``{"seg_logits": (N, K, h, w)}``, ``h, w`` = ceil(H / stride)
        of the low-level tap for an (H, W) input."""
        low_level = features[self.low_level_spec.name]
        encoded = self.aspp(features[self.encoder_spec.name])
        encoded = self._resize(encoded, tuple(low_level.shape[-2:]))
        x = torch.cat([encoded, self.low_level(low_level)], dim=1)
        return {"seg_logits": self.classifier(self.dropout(self.decoder(x)))}

    def upsample_logits(self, logits: Tensor, input_size: tuple[int, int]) -> Tensor:
        """(N, K, h, w) -> (N, K, *input_size), by the head's in-graph rule (always
        interpolated, so ONNX traces stay free of shape-dependent branches)."""
        if self.tf_legacy_resize:
            return resize_asymmetric(logits, input_size)
        return super().upsample_logits(logits, input_size)

    def _resize(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if self.tf_legacy_resize:
            return resize_asymmetric(x, size)
        return upsample(x, size, self.align_corners)
