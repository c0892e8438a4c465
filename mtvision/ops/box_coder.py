"""SSD box coding: boxes as weighted centre/size offsets from their anchors."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_convert

__all__ = ["BoxCoder"]


class BoxCoder:
    """Encode xyxy boxes relative to xyxy anchors and decode them back.

    With anchor centre (xa, ya) and size (wa, ha), a box (x, y, w, h) in centre form
    becomes::

        dx = wx * (x - xa) / wa      dw = ww * log(w / wa)
        dy = wy * (y - ya) / ha      dh = wh * log(h / ha)

    ``weights = (wx, wy, ww, wh)``; SSD's (10, 10, 5, 5) are the inverse of its
    "variances" (0.1, 0.1, 0.2, 0.2). The TF object detection API orders the code
    (ty, tx, th, tw) with scales (10, 10, 5, 5): the same numbers, other order.
    The codes do not depend on the unit of the coordinates (pixels or normalised).

    Args:
        weights: (wx, wy, ww, wh).
        bbox_xform_clip: upper clamp of the decoded ``dw / ww`` and ``dh / wh`` so
            that ``exp`` cannot overflow (torchvision's default ``log(1000 / 16)``:
            a box at most 62.5 times its anchor).
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        bbox_xform_clip: float = math.log(1000.0 / 16),
    ) -> None:
        if len(weights) != 4 or any(w <= 0 for w in weights):
            raise ValueError(f"weights must be four positive numbers, got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """(..., 4) xyxy boxes and matching (..., 4) xyxy anchors -> (..., 4) codes (dx, dy, dw, dh).

        Boxes and anchors need positive width and height (else the log is -inf).
        """
        weights = boxes.new_tensor(self.weights)
        box_centre = box_convert(boxes, "xyxy", "cxcywh")
        anchor_centre = box_convert(anchors, "xyxy", "cxcywh")
        offsets = (box_centre[..., :2] - anchor_centre[..., :2]) / anchor_centre[..., 2:]
        log_sizes = torch.log(box_centre[..., 2:] / anchor_centre[..., 2:])
        return torch.cat((offsets, log_sizes), dim=-1) * weights

    def decode(self, codes: Tensor, anchors: Tensor) -> Tensor:
        """(..., 4) codes and (..., 4) xyxy anchors -> (..., 4) xyxy boxes (same unit as anchors)."""
        weights = codes.new_tensor(self.weights)
        codes = codes / weights
        anchor_centre = box_convert(anchors, "xyxy", "cxcywh")
        centres = codes[..., :2] * anchor_centre[..., 2:] + anchor_centre[..., :2]
        sizes = torch.exp(codes[..., 2:].clamp(max=self.bbox_xform_clip)) * anchor_centre[..., 2:]
        return box_convert(torch.cat((centres, sizes), dim=-1), "cxcywh", "xyxy")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip})"
        )
