"""DeepLabv3 segmentation head on one backbone tap (MobileNetV2 paper, section 6.3, Table 7):
ASPP, per-pixel cross-entropy, and label maps at the original image size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtvision.heads.base import Head, annotated_samples, merge_test_cfg, sample_source, zero_loss
from mtvision.layers.aspp import ASPP
from mtvision.layers.feature_spec import FeatureSpec
from mtvision.registry import MODELS
from mtvision.tasks import SEGMENTATION
from mtvision.tasks.segmentation import (
    label_maps,
    logits_to_original,
    probabilities_at_original_size,
)

# DeepLabv3 states its atrous rates for output stride 16 and doubles them at 8.
RATES_OUTPUT_STRIDE = 16
DEFAULT_TEST_CFG = dict(scales=(1.0,), flip=False)


@MODELS.register_module()
class DeepLabV3Head(Head):
    """(Atrous) spatial pyramid pooling -> dropout -> 1x1 classifier, at the tap's stride.

    Two variants, both from Table 7 of the MobileNetV2 paper:

    - ``aspp=False`` (the paper's on-device pick): a 1x1 branch and an image-pooling
      branch, ``channels`` wide each, concatenated and projected to ``channels``.
    - ``aspp=True``: the full ASPP adds one plain 3x3 conv per atrous rate. Rates are
      given for output stride 16 and scaled by ``16 / stride`` of the tap, so a
      stride-8 tap gets (12, 24, 36) from the default (6, 12, 18).

    Args:
        feature_info: the backbone's taps; the head selects ``in_features`` from them
            (its ``channels`` and ``stride`` size the head).
        num_classes: number of classes K (21 for PASCAL VOC, background included).
        channels: width of the branches and of the projection (256 in the paper).
        aspp: add the atrous 3x3 branches.
        atrous_rates: dilations at output stride 16; used only with ``aspp=True``.
        dropout: element-wise dropout probability before the classifier (TF-DeepLab:
            keep_prob 0.9).
        ignore_index: mask value that is neither trained nor predicted.
        test_cfg: ``dict(scales=(1.0,), flip=False)``. Several scales and/or flip
            average the softmax probabilities of every (scale, flip) view at the
            original size (``test_time_views``; the composing model runs the views);
            each scale resizes the image (h, w) to (h * scale, w * scale) rounded
            half up.
        in_features: the one tap read; default ``("stage7",)``, the 320-channel map the
            paper's DeepLabv3 uses (not the 1280-channel ``final_conv``).
        padding: ``"symmetric"`` or ``"same"`` (TF) for the ASPP's convs.
        align_corners: how the head's bilinear resizes (logits to the input size and
            to ``meta["ori_shape"]``, images to the test-time scales) map pixels.
            ``False``: pixel centres (PyTorch's default, mmseg's); ``True``: corner
            pixels aligned, as TF-DeepLab and its TFLite files resize (with a feature
            map of (H - 1) / output_stride + 1 pixels, e.g. 33 for 513, feature k
            lands on pixel k * output_stride).
        init_cfg: mmengine initialisation config (e.g. ``Pretrained`` with a prefix).

    Contract (see ``docs/architecture.md``), for an input batch of (H, W):

    - ``forward(features)``: ``{"seg_logits": (N, K, h, w)}`` at the tap's stride.
    - ``loss(outputs, data_samples, input_size=(H, W))``: ``{"loss_seg"}``, the logits
      upsampled bilinearly to (H, W) (``align_corners`` as set), cross-entropy against
      each sample's ``mask`` (uint8 (h, w), top-left aligned, ``ignore_index`` =
      ignore; the padding is ignored too), averaged over the labelled pixels of the
      samples that carry a mask, 0 when every pixel is ignored. Samples without a
      ``mask`` give no loss.
    - ``predict(outputs, data_samples, input_size)``: per image ``pred_mask`` int64
      (H_o, W_o) with ``(H_o, W_o) = meta["ori_shape"]`` (logits resized bilinearly
      to it before the argmax of the softmax), plus ``gt_mask`` when the sample has
      a mask. The images must fill the input (the composing model cuts each group
      of images of one ``img_shape`` out of the padded batch before the backbone
      runs, so padding changes neither the image-pooling average nor the border).
    - ``deploy(outputs, input_size, with_logits=False)``: the deployed graph's outputs,
      the class map at the input size (one view; ``test_time_views`` do not apply).
    """

    task = SEGMENTATION
    in_features: tuple[str, ...] = ("stage7",)

    def __init__(
        self,
        feature_info: Sequence[FeatureSpec],
        num_classes: int,
        channels: int = 256,
        aspp: bool = False,
        atrous_rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
        ignore_index: int = 255,
        test_cfg: dict | None = None,
        in_features: Sequence[str] | None = None,
        padding: str = "symmetric",
        align_corners: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        (self.in_spec,) = self.select_taps(feature_info, in_features, count=1)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.align_corners = bool(align_corners)
        self.test_time_views = _test_time_views(test_cfg)
        rates = self.scaled_atrous_rates(atrous_rates, self.in_spec.stride) if aspp else ()
        self.aspp = ASPP(self.in_spec.channels, channels, rates, padding=padding)
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

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``features[in_spec.name]`` (N, C, h, w) -> ``{"seg_logits": (N, K, h, w)}``.

        ``h, w`` = ceil(H / stride), ceil(W / stride) of the (H, W) network input.
        """
        x = self.aspp(features[self.in_spec.name])
        return {"seg_logits": self.classifier(self.dropout(x))}

    # ------------------------------------------------------------------- loss

    def loss(
        self,
        outputs: dict[str, Tensor],
        data_samples: Sequence[dict] | None,
        input_size: tuple[int, int],
    ) -> dict[str, Tensor]:
        logits = outputs["seg_logits"]
        indices = annotated_samples(data_samples, ("mask",), len(logits), type(self).__name__)
        if not indices:
            return {"loss_seg": zero_loss(outputs)}
        if len(indices) < len(logits):
            logits = logits[indices]
        target = self._batch_target([data_samples[i] for i in indices], input_size, logits.device)
        logits = self.upsample_logits(logits, input_size).float()
        total = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum")
        num_labelled = (target != self.ignore_index).sum()
        return {"loss_seg": total / num_labelled.clamp(min=1)}

    def _batch_target(
        self, data_samples: list[dict], input_size: tuple[int, int], device: torch.device
    ) -> Tensor:
        """Masks pasted top-left into an (n, H, W) int64 map filled with ``ignore_index``."""
        height, width = input_size
        target = torch.full((len(data_samples), height, width), self.ignore_index, dtype=torch.long)
        target = target.to(device)
        for index, sample in enumerate(data_samples):
            mask = torch.as_tensor(sample["mask"], device=device)
            if mask.ndim != 2 or mask.shape[0] > height or mask.shape[1] > width:
                raise ValueError(
                    f"mask of {sample_source(sample)} has shape {tuple(mask.shape)}; expected "
                    f"(h, w) within the batch's input size {(height, width)}"
                )
            target[index, : mask.shape[0], : mask.shape[1]] = mask
        unknown = (target != self.ignore_index) & ((target < 0) | (target >= self.num_classes))
        if unknown.any():
            index = int(unknown.flatten(1).any(1).nonzero()[0])
            values = sorted(set(target[index][unknown[index]].tolist()))
            raise ValueError(
                f"mask of {sample_source(data_samples[index])} has values {values}; expected "
                f"class ids 0..{self.num_classes - 1} or ignore_index {self.ignore_index}"
            )
        return target

    # ---------------------------------------------------------------- predict

    def postprocess(
        self, outputs: dict[str, Tensor], input_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Tensor post-processing: ``{"seg_logits": (N, K, H, W)}`` upsampled to the input.

        The argmax follows the resize to each original image size, in :meth:`to_original`
        (for an input at the original size it is ``seg_logits.argmax(1)``).
        """
        return {"seg_logits": self.upsample_logits(outputs["seg_logits"], input_size)}

    def upsample_logits(self, logits: Tensor, input_size: tuple[int, int]) -> Tensor:
        """(N, K, h, w) logits -> (N, K, *input_size): :func:`upsample` with the head's
        ``align_corners`` (a subclass may resize by another rule)."""
        return upsample(logits, input_size, self.align_corners)

    def deploy(
        self,
        outputs: dict[str, Tensor],
        input_size: tuple[int, int],
        with_logits: bool = False,
        class_logits: bool = False,
        channels_last: bool = False,
    ) -> dict[str, Tensor]:
        """What an exported graph returns: ``{"mask": (N, H, W) uint8}``, the argmax of the
        logits upsampled to the (H, W) input (:meth:`postprocess`), plus ``"seg_logits"``
        (N, K, H, W) float32 when ``with_logits``. Needs K <= 256. With ``class_logits``
        instead ``{"class_logits": (N, H, W, K)}``, the upsampled logits channels last
        (what MediaPipe's ``ImageSegmenter`` reads, applying the softmax its metadata
        names, to make its category mask; the argmax is the same as the mask's).
        ``channels_last``: the mask is the argmax over the last axis of the logits'
        channels-last view (the same mask), so that a graph of a channels-last runtime
        (LiteRT's converter) reduces the logits where they lie, with no transpose of the
        full-size (N, H, W, K) logits before the argmax."""
        logits = self.postprocess(outputs, input_size)["seg_logits"]
        if class_logits:
            return {"class_logits": logits.permute(0, 2, 3, 1)}
        if self.num_classes > 256:
            raise ValueError(f"a uint8 class map holds 256 classes, not {self.num_classes}")
        if channels_last:
            mask = logits.permute(0, 2, 3, 1).argmax(dim=3)
        else:
            mask = logits.argmax(dim=1)
        results = {"mask": mask.to(torch.uint8)}
        if with_logits:
            results["seg_logits"] = logits
        return results

    def to_original(self, results: dict[str, Tensor], data_samples: Sequence[dict]) -> list[dict]:
        """:func:`~mtvision.tasks.segmentation.logits_to_original` with the head's
        ``align_corners``."""
        return logits_to_original(results, data_samples, self.align_corners)

    def predict_views(
        self,
        views: Sequence[tuple[dict[str, Tensor], tuple[int, int]]],
        data_samples: Sequence[dict],
        image_size: tuple[int, int],
    ) -> list[dict]:
        """Test-time augmentation: one ``(outputs, input_size)`` per entry of
        ``test_time_views`` (same order), computed on the images of ``image_size``
        (which they fill) resized by the view's scale and, for a flipped view,
        mirrored left-right. The softmax probabilities of all views at the original
        size (``meta["ori_shape"]``, default ``image_size``) are summed before the
        argmax."""
        if len(views) != len(self.test_time_views):
            raise ValueError(
                f"predict_views needs {len(self.test_time_views)} views "
                f"{self.test_time_views}, got {len(views)}"
            )
        totals: list[Tensor] | None = None
        for (outputs, input_size), (_, flip) in zip(views, self.test_time_views, strict=True):
            logits = self.postprocess(outputs, input_size)["seg_logits"]
            if flip:
                logits = logits.flip(-1)
            probabilities = [
                probabilities_at_original_size(
                    logits[index : index + 1], sample, image_size, self.align_corners
                )
                for index, sample in enumerate(data_samples)
            ]
            totals = (
                probabilities
                if totals is None
                else [total + p for total, p in zip(totals, probabilities, strict=True)]
            )
        return label_maps(totals, data_samples)


def upsample(logits: Tensor, input_size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinear upsampling of (N, K, h, w) to (N, K, *input_size) (``align_corners``: see
    :class:`DeepLabV3Head`).

    Always interpolated (the head map is smaller than the input), so ONNX traces
    stay free of shape-dependent branches.
    """
    return F.interpolate(
        logits, size=tuple(input_size), mode="bilinear", align_corners=align_corners
    )


def _test_time_views(test_cfg: dict | None) -> tuple[tuple[float, bool], ...]:
    """(scale, flip) of every test-time view, scales outer, the unflipped view first."""
    cfg = merge_test_cfg(test_cfg, DEFAULT_TEST_CFG, "DeepLabV3Head")
    scales = cfg["scales"]
    if not isinstance(scales, Sequence) or not scales or any(float(s) <= 0 for s in scales):
        raise ValueError(
            f"test_cfg['scales'] must be a non-empty list of positive numbers, got {scales!r}"
        )
    flips = (False, True) if cfg["flip"] else (False,)
    return tuple((float(scale), flip) for scale in scales for flip in flips)
