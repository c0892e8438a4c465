"""SSD's geometric augmentations as albumentations transforms: ``ZoomOut`` and ``MinIoURandomCrop``.

Both are albumentations ``DualTransform`` subclasses, so inside
``dict(type="Albumentations", transforms=[...])`` (mtvision's pipeline step,
which finds them by name) boxes, their labels and masks go through
albumentations' own bbox machinery like with any stock transform. Random draws
come from ``self.py_random`` (the generator albumentations' ``Compose`` hands
to every transform), so the pipeline's per-process reseeding covers them.

The rest of the SSD recipe (Liu et al., "SSD: Single Shot MultiBox Detector",
arXiv:1512.02325, section 2.2 / 3.6, as implemented by mmdet and torchvision)
is expressible with stock albumentations:

- photometric distortion as mmdet's ``PhotoMetricDistortion`` (each step with
  probability 0.5): brightness delta +-32 -> ``RandomBrightnessContrast(
  brightness_limit=32/255)`` (additive, ``brightness_by_max`` scales it by
  255); contrast 0.5-1.5 -> ``RandomBrightnessContrast(contrast_limit=0.5)``
  (multiplies pixel values, as mmdet does), applied either before or after
  saturation/hue (``OneOf`` of two ``Sequential``); saturation 0.5-1.5 ->
  ``ColorJitter(saturation=(0.5, 1.5))`` (torchvision's blend with the gray
  image, where mmdet scales the HSV S channel); hue +-18 degrees ->
  ``ColorJitter(hue=18/360)`` (albumentations' hue factor is a fraction of the
  full circle); channel swap -> ``ChannelShuffle``;
- horizontal flip -> ``HorizontalFlip``; resize to the input size ->
  ``Resize`` (bilinear, aspect ratio not kept, as in mmdet's SSD configs).

The SSDLite recipe's pipelines (input size 320; the order is the SSD paper's
and torchvision's: photometric, zoom out, crop, flip, resize) are
``train_pipeline`` / ``test_pipeline`` in
``configs/_base_/datasets/coco_detection.py``; tests/test_ssd_transforms.py
builds and checks them from there.

The test pipeline only resizes the whole image, so a detector maps its boxes
back to the original image with ``meta["ori_shape"] / meta["img_shape"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from albumentations.augmentations.crops import functional as fcrops
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.core.bbox_utils import denormalize_bboxes
from albumentations.core.transforms_interface import BaseTransformInitSchema, DualTransform
from albumentations.core.type_definitions import Targets
from pydantic import Field, field_validator

from mtvision.data.normalization import IMAGENET_MEAN_RGB

__all__ = ["MinIoURandomCrop", "ZoomOut"]


class ZoomOut(DualTransform):
    """Place the image at a random position on a larger canvas of a constant colour.

    SSD's "expand" (mmdet ``Expand``, torchvision ``RandomZoomOut``): a ratio
    ``r`` is drawn uniformly from ``ratio_range``; the canvas is
    ``(int(H * r), int(W * r))``, filled with ``fill``; the image's top-left
    corner lands at integer ``(left, top)`` drawn uniformly from
    ``0..canvas_w - W`` and ``0..canvas_h - H``. After the final resize the
    objects are smaller: the detector sees more small objects.

    Boxes (xyxy) move by ``(left, top)`` pixels and keep their size; keypoints
    move the same way; masks are placed like the image on a ``fill_mask``
    canvas.

    Args:
        ratio_range: (min, max) canvas side / image side, ``1 <= min <= max``.
        fill: canvas colour of the image, per channel or one value. The
            default is the ImageNet mean, so the canvas becomes zero after the
            data preprocessor's normalisation; uint8 images round it to
            (124, 116, 104).
        fill_mask: canvas value of masks (use 255 to ignore the canvas in
            segmentation).
        p: probability of applying the transform (0.5 in the SSD recipe).

    Targets: image, mask, bboxes, keypoints. Image types: uint8, float32.
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.BBOXES, Targets.KEYPOINTS)

    class InitSchema(BaseTransformInitSchema):
        ratio_range: tuple[float, float]
        fill: tuple[float, ...] | float
        fill_mask: tuple[float, ...] | float

        @field_validator("ratio_range")
        @classmethod
        def _check_ratio_range(cls, value: tuple[float, float]) -> tuple[float, float]:
            if not 1.0 <= value[0] <= value[1]:
                raise ValueError(f"ratio_range must satisfy 1 <= min <= max, got {value}")
            return value

    def __init__(
        self,
        ratio_range: tuple[float, float] = (1.0, 4.0),
        fill: tuple[float, ...] | float = IMAGENET_MEAN_RGB,
        fill_mask: tuple[float, ...] | float = 0,
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.ratio_range = ratio_range
        self.fill = fill
        self.fill_mask = fill_mask

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, int]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(*self.ratio_range)
        canvas_height, canvas_width = int(height * ratio), int(width * ratio)
        left = self.py_random.randint(0, canvas_width - width)
        top = self.py_random.randint(0, canvas_height - height)
        return {
            "pad_top": top,
            "pad_bottom": canvas_height - height - top,
            "pad_left": left,
            "pad_right": canvas_width - width - left,
        }

    def apply(
        self,
        img: np.ndarray,
        pad_top: int,
        pad_bottom: int,
        pad_left: int,
        pad_right: int,
        **params: Any,
    ) -> np.ndarray:
        return fgeometric.pad_with_params(
            img, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_CONSTANT, self.fill
        )

    def apply_to_mask(
        self,
        mask: np.ndarray,
        pad_top: int,
        pad_bottom: int,
        pad_left: int,
        pad_right: int,
        **params: Any,
    ) -> np.ndarray:
        return fgeometric.pad_with_params(
            mask, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_CONSTANT, self.fill_mask
        )

    def apply_to_bboxes(
        self,
        bboxes: np.ndarray,
        pad_top: int,
        pad_bottom: int,
        pad_left: int,
        pad_right: int,
        **params: Any,
    ) -> np.ndarray:
        # albumentations' internal boxes: (N, 4 + extra) [x_min, y_min, x_max, y_max]
        # normalised by the image size; the extra columns (labels) are kept.
        height, width = params["shape"][:2]
        canvas_height = height + pad_top + pad_bottom
        canvas_width = width + pad_left + pad_right
        moved = bboxes.copy()
        moved[:, [0, 2]] = (bboxes[:, [0, 2]] * width + pad_left) / canvas_width
        moved[:, [1, 3]] = (bboxes[:, [1, 3]] * height + pad_top) / canvas_height
        return moved

    def apply_to_keypoints(
        self, keypoints: np.ndarray, pad_top: int, pad_left: int, **params: Any
    ) -> np.ndarray:
        # albumentations' internal keypoints: (N, 2 + extra) [x, y, ...] in pixels.
        moved = keypoints.copy()
        moved[:, 0] += pad_left
        moved[:, 1] += pad_top
        return moved


class MinIoURandomCrop(BaseCrop):
    """Crop a random patch whose IoU with every box is at least a drawn minimum (SSD sampling).

    mmdet's ``MinIoURandomCrop``: each call draws a mode from ``("no crop",
    *min_ious, 0.0)``. "no crop" keeps the image. Otherwise up to
    ``max_trials`` patches are drawn: width and height uniform in
    ``[min_crop_size, 1]`` times the image's, ``height / width`` within
    ``aspect_ratio_range``, a uniform integer-pixel position; a patch is
    accepted when its IoU with *every* box is at least the mode's minimum (as
    in mmdet; the SSD paper's Caffe sampler and torchvision's ``RandomIoUCrop``
    ask it of at least one box) and
    the centre of at least one box lies strictly inside it. When all trials
    fail, a new mode is drawn. An image without boxes takes the first patch of
    valid size.

    Boxes whose centre lies outside the crop are removed (their labels go with
    them); the others are clipped to the crop.

    Args:
        min_ious: minimum IoUs to sample from, each in [0, 1].
        min_crop_size: smallest crop side as a fraction of the image side, in (0, 1].
        aspect_ratio_range: allowed (min, max) of crop ``height / width``.
        max_trials: patches tried per drawn mode.
        p: probability of applying the transform.

    Targets: image, mask, bboxes, keypoints (keypoints are cropped, not used
    to choose the crop). Image types: uint8, float32.
    """

    class InitSchema(BaseTransformInitSchema):
        min_ious: Sequence[float]
        min_crop_size: float = Field(gt=0, le=1)
        aspect_ratio_range: tuple[float, float]
        max_trials: int = Field(ge=1)

        @field_validator("min_ious")
        @classmethod
        def _check_min_ious(cls, value: Sequence[float]) -> tuple[float, ...]:
            if not all(0.0 <= iou <= 1.0 for iou in value):
                raise ValueError(f"min_ious must lie in [0, 1], got {value}")
            return tuple(value)

        @field_validator("aspect_ratio_range")
        @classmethod
        def _check_aspect_ratio_range(cls, value: tuple[float, float]) -> tuple[float, float]:
            if not 0.0 < value[0] <= value[1]:
                raise ValueError(f"aspect_ratio_range must satisfy 0 < min <= max, got {value}")
            return value

    def __init__(
        self,
        min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        min_crop_size: float = 0.3,
        aspect_ratio_range: tuple[float, float] = (0.5, 2.0),
        max_trials: int = 50,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        self.min_ious = tuple(min_ious)
        self.min_crop_size = min_crop_size
        self.aspect_ratio_range = aspect_ratio_range
        self.max_trials = max_trials

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """Returns ``crop_coords`` (x_min, y_min, x_max, y_max) in pixels and the
        ``min_iou`` it satisfies (``None`` for "no crop")."""
        height, width = params["shape"][:2]
        normalised = data.get("bboxes", np.zeros((0, 4), np.float32))
        boxes = denormalize_bboxes(np.asarray(normalised)[:, :4], (height, width))
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        modes = (None, *self.min_ious, 0.0)
        while True:
            min_iou = self.py_random.choice(modes)
            if min_iou is None:
                return {"crop_coords": (0, 0, width, height), "min_iou": None}
            for _ in range(self.max_trials):
                patch = self._draw_patch(height, width)
                if patch is not None and _patch_fits(patch, boxes, min_iou):
                    return {"crop_coords": patch, "min_iou": min_iou}

    def _draw_patch(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """A random patch of valid size and aspect, or ``None`` when the draw is rejected."""
        crop_width = self.py_random.uniform(self.min_crop_size * width, width)
        crop_height = self.py_random.uniform(self.min_crop_size * height, height)
        low, high = self.aspect_ratio_range
        if not low <= crop_height / crop_width <= high:
            return None
        left = self.py_random.uniform(0, width - crop_width)
        top = self.py_random.uniform(0, height - crop_height)
        patch = (int(left), int(top), int(left + crop_width), int(top + crop_height))
        if patch[2] == patch[0] or patch[3] == patch[1]:
            return None
        return patch

    def apply_to_bboxes(
        self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any
    ) -> np.ndarray:
        # albumentations' internal boxes: (N, 4 + extra) normalised xyxy, extra columns
        # (labels) travel with their rows, so dropping rows drops their labels.
        if not len(bboxes):
            return bboxes
        height, width = params["shape"][:2]
        inside = _centres_inside(denormalize_bboxes(bboxes[:, :4], (height, width)), crop_coords)
        cropped = fcrops.crop_bboxes_by_coords(bboxes[inside], crop_coords, (height, width))
        cropped[:, :4] = np.clip(cropped[:, :4], 0.0, 1.0)
        return cropped


def _centres_inside(boxes: np.ndarray, patch: Sequence[float]) -> np.ndarray:
    """(N,) bool: centre of each xyxy pixel box strictly inside ``patch`` (x0, y0, x1, y1)."""
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    return (
        (centre_x > patch[0])
        & (centre_x < patch[2])
        & (centre_y > patch[1])
        & (centre_y < patch[3])
    )


def _patch_fits(patch: tuple[int, int, int, int], boxes: np.ndarray, min_iou: float) -> bool:
    """SSD's acceptance test: IoU >= ``min_iou`` with every box, and some box centre inside."""
    if len(boxes) == 0:
        return True
    # numpy, not torchvision.ops.box_iou: this runs up to max_trials times per sample
    # in data-loader workers, where a torch call costs ~100x more than these lines.
    x0, y0, x1, y1 = patch
    inter_w = np.clip(np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0), 0, None)
    inter_h = np.clip(np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0), 0, None)
    inter = inter_w * inter_h
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ious = inter / ((x1 - x0) * (y1 - y0) + box_areas - inter)
    if ious.min() < min_iou:
        return False
    return bool(_centres_inside(boxes, patch).any())
