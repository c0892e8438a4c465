"""Semantic segmentation: backbone tap -> DeepLabv3 head -> per-pixel cross-entropy / label maps."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from mtvision.layers.feature_spec import select_specs
from mtvision.models.data_preprocessor import build_data_preprocessor
from mtvision.registry import MODELS

TEST_CFG_KEYS = ("scales", "flip")


@MODELS.register_module()
class Segmentor(BaseModel):
    """Backbone + :class:`~mtvision.heads.DeepLabV3Head` behind mmengine's model contract.

    The head names the tap it reads (``decode_head["in_feature"]``, default
    ``"stage7"``: the 320-channel map the MobileNetV2 paper's DeepLabv3 uses, not the
    1280-channel ``final_conv``). The backbone is built to return only that tap; its
    layers after the tap never run, so their parameters are frozen: they would get
    no gradient, which stops DistributedDataParallel, and they do not belong in the
    model's size. They stay in the state dict, so torchvision weights load as a whole.

    ``forward(inputs, data_samples, mode)`` with ``inputs`` a normalised (N, 3, H, W)
    batch, padded bottom/right by the data preprocessor to its largest image:

    - ``mode="tensor"``: logits (N, K, H, W), bilinearly upsampled from the head's
      stride (``align_corners`` as set, PyTorch's ``False`` by default).
    - ``mode="loss"``: ``{"loss_seg": scalar}``, cross-entropy against each data
      sample's ``mask`` (uint8 (h, w), top-left aligned, ``ignore_index`` = ignore;
      the padding is ignored too), averaged over the batch's non-ignored pixels and
      0 when every pixel is ignored.
    - ``mode="predict"``: one dict per image, ``{"pred_mask": int64 (H_o, W_o),
      "gt_mask": the sample's mask (when present), "meta": the sample's meta}``,
      ``(H_o, W_o) = meta["ori_shape"]``. Each image is cut from the padded batch at
      ``meta["img_shape"]`` *before* the network runs (images of one shape run
      together), so padding changes neither the image-pooling average nor the
      border; logits are resized bilinearly to ``ori_shape`` before the argmax.

    Args:
        backbone: config dict (``type`` in ``mtvision.registry.MODELS``) or a built
            backbone exposing ``feature_info`` and returning ``in_feature``.
        decode_head: config dict of the head with ``in_feature`` and ``num_classes``.
        ignore_index: mask value that is neither trained nor predicted.
        test_cfg: ``dict(scales=(1.0,), flip=False)``. Several scales and/or flip
            average the softmax probabilities of every (scale, flip) pass at
            ``ori_shape``; each scale resizes the image (h, w) to
            (h * scale, w * scale) rounded half up.
        data_preprocessor: config of the batch preprocessor (normalisation, padding).
        channels_last: keep weights in channels-last memory format (pair it with
            the preprocessor's ``channels_last``).
        align_corners: how the model's bilinear resizes (logits to the input size and
            to ``ori_shape``, images to the test scales) map pixels. ``False``: pixel centres
            (PyTorch's default, mmseg's); ``True``: corner pixels aligned, as
            TF-DeepLab and its TFLite files resize (with a feature map of (H - 1) /
            output_stride + 1 pixels, e.g. 33 for 513, feature k lands on pixel
            k * output_stride).
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        decode_head: dict,
        ignore_index: int = 255,
        test_cfg: dict | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        channels_last: bool = False,
        init_cfg: dict | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__(
            data_preprocessor=build_data_preprocessor(data_preprocessor), init_cfg=init_cfg
        )
        head = copy.deepcopy(decode_head)
        in_feature = head.pop("in_feature", "stage7")
        if isinstance(backbone, dict):
            backbone = MODELS.build({**backbone, "out_features": (in_feature,)})
        elif in_feature not in backbone.out_features:
            raise ValueError(
                f"the head reads tap {in_feature!r} but the backbone returns {backbone.out_features}"
            )
        (in_spec,) = select_specs(backbone.feature_info, [in_feature])
        self.backbone = backbone
        self.decode_head = MODELS.build(head, default_args=dict(in_spec=in_spec))
        self.num_classes: int = self.decode_head.num_classes
        self.ignore_index = ignore_index
        self.align_corners = bool(align_corners)
        self.scales, self.flip = _parse_test_cfg(test_cfg)
        self._freeze_layers_after(in_feature)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _freeze_layers_after(self, in_feature: str) -> None:
        """Freeze backbone modules named after taps deeper than ``in_feature`` (and its
        classifier). A tap inside a module (``layer15_expansion``) freezes nothing."""
        children = dict(self.backbone.named_children())
        if in_feature not in children:
            return
        tap_names = [spec.name for spec in self.backbone.feature_info] + ["classifier"]
        for name in tap_names[tap_names.index(in_feature) + 1 :]:
            if children.get(name) is not None:
                children[name].requires_grad_(False)

    # ---------------------------------------------------------------- forward

    def forward(self, inputs: Tensor, data_samples: list[dict] | None = None, mode: str = "tensor"):
        if mode == "tensor":
            return self._logits(inputs)
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    def _logits(self, inputs: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, K, H, W) logits."""
        logits = self.decode_head(self.backbone(inputs))["seg_logits"]
        # Always interpolated (the head map is smaller than the input): ONNX traces stay shape-free.
        return F.interpolate(
            logits, size=inputs.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )

    # ------------------------------------------------------------------- loss

    def loss(self, inputs: Tensor, data_samples: list[dict] | None) -> dict[str, Tensor]:
        target = self._batch_target(data_samples, inputs)
        logits = self._logits(inputs).float()
        total = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum")
        num_labelled = (target != self.ignore_index).sum()
        return {"loss_seg": total / num_labelled.clamp(min=1)}

    def _batch_target(self, data_samples: list[dict] | None, inputs: Tensor) -> Tensor:
        """Masks pasted top-left into an (N, H, W) int64 map filled with ``ignore_index``."""
        n, _, height, width = inputs.shape
        if data_samples is None or len(data_samples) != n:
            raise ValueError(
                f"mode='loss' needs one data sample per image ({n}), got "
                f"{None if data_samples is None else len(data_samples)}"
            )
        target = torch.full((n, height, width), self.ignore_index, dtype=torch.long)
        target = target.to(inputs.device)
        for index, sample in enumerate(data_samples):
            if "mask" not in sample:
                raise ValueError(
                    f"mode='loss' needs a 'mask' in every data sample; {_name(sample)} has none"
                )
            mask = torch.as_tensor(sample["mask"], device=inputs.device)
            if mask.ndim != 2 or mask.shape[0] > height or mask.shape[1] > width:
                raise ValueError(
                    f"mask of {_name(sample)} has shape {tuple(mask.shape)}; expected (h, w) "
                    f"within the batch's input size {(height, width)}"
                )
            target[index, : mask.shape[0], : mask.shape[1]] = mask
        unknown = (target != self.ignore_index) & ((target < 0) | (target >= self.num_classes))
        if unknown.any():
            index = int(unknown.flatten(1).any(1).nonzero()[0])
            values = sorted(set(target[index][unknown[index]].tolist()))
            raise ValueError(
                f"mask of {_name(data_samples[index])} has values {values}; expected class ids "
                f"0..{self.num_classes - 1} or ignore_index {self.ignore_index}"
            )
        return target

    # ---------------------------------------------------------------- predict

    def predict(self, inputs: Tensor, data_samples: list[dict] | None = None) -> list[dict]:
        n, _, height, width = inputs.shape
        samples = list(data_samples) if data_samples is not None else [{} for _ in range(n)]
        if len(samples) != n:
            raise ValueError(f"got {len(samples)} data samples for {n} images")
        images_by_shape: dict[tuple[int, int], list[int]] = {}
        for index, sample in enumerate(samples):
            img_shape = tuple(
                int(s) for s in sample.get("meta", {}).get("img_shape", (height, width))
            )
            if img_shape[0] > height or img_shape[1] > width:
                raise ValueError(
                    f"meta['img_shape'] {img_shape} of {_name(sample)} exceeds the batch's input "
                    f"size {(height, width)}"
                )
            images_by_shape.setdefault(img_shape, []).append(index)

        predictions: list[dict] = [{} for _ in range(n)]
        for (h, w), indices in images_by_shape.items():
            crops = inputs if len(indices) == n else inputs[indices]
            crops = crops[:, :, :h, :w]
            out_sizes = [
                tuple(int(s) for s in samples[i].get("meta", {}).get("ori_shape", (h, w)))
                for i in indices
            ]
            for index, scores in zip(
                indices, self._test_time_scores(crops, out_sizes), strict=True
            ):
                predictions[index]["pred_mask"] = scores.argmax(dim=0)
        for prediction, sample in zip(predictions, samples, strict=True):
            if "mask" in sample:
                prediction["gt_mask"] = sample["mask"]
            if "meta" in sample:
                prediction["meta"] = sample["meta"]
        return predictions

    def _test_time_scores(self, images: Tensor, out_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Summed softmax probabilities over the test-time (scale, flip) passes.

        ``images`` (n, 3, h, w) share one size; returns n tensors (K, *out_sizes[i]).
        """
        h, w = images.shape[-2:]
        totals: list[Tensor | None] = [None] * len(out_sizes)
        for scale in self.scales:
            size = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
            scaled = _resize(images, size, self.align_corners)
            for flip in (False, True) if self.flip else (False,):
                logits = self._logits(scaled.flip(-1) if flip else scaled)
                if flip:
                    logits = logits.flip(-1)
                for i, out_size in enumerate(out_sizes):
                    resized = _resize(logits[i : i + 1], out_size, self.align_corners)
                    probabilities = resized.float().softmax(dim=1)[0]
                    totals[i] = probabilities if totals[i] is None else totals[i] + probabilities
        return totals


def _resize(x: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
    """Bilinear resize of (N, C, h, w) to (N, C, *size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def _name(sample: dict) -> str:
    """The file a data sample came from, for error messages."""
    meta = sample.get("meta", {})
    for key in ("seg_path", "img_path"):
        if key in meta:
            return str(meta[key])
    if "sample_idx" in meta:
        return f"sample {meta['sample_idx']}"
    return "a data sample without meta"


def _parse_test_cfg(test_cfg: dict | None) -> tuple[tuple[float, ...], bool]:
    cfg = dict(test_cfg or {})
    unknown = sorted(set(cfg) - set(TEST_CFG_KEYS))
    if unknown:
        raise ValueError(f"test_cfg has unknown keys {unknown}; allowed: {list(TEST_CFG_KEYS)}")
    scales = cfg.get("scales", (1.0,))
    if not isinstance(scales, Sequence) or not scales or any(float(s) <= 0 for s in scales):
        raise ValueError(
            f"test_cfg['scales'] must be a non-empty list of positive numbers, got {scales!r}"
        )
    return tuple(float(s) for s in scales), bool(cfg.get("flip", False))
