"""The one rule a box keeps, wherever boxes enter: the datasets (COCO, VOC), the
pipeline (``LoadImage``, ``Albumentations``) and the detection loss.

A box is xyxy in pixels, ``(x1, y1, x2, y2)`` with ``x1, y1`` its top-left edge and
``x2, y2`` its bottom-right edge (pixel edges, so a 1-pixel box is ``x2 = x1 + 1``):

- its four numbers are finite;
- it has a positive width and height: ``x2 > x1`` and ``y2 > y1``;
- against an image of ``(width, height)``, it lies inside it:
  ``0 <= x1``, ``0 <= y1``, ``x2 <= width``, ``y2 <= height``.

Readers of annotations clip boxes to the image first (:func:`clip_boxes`) and refuse
(or drop) those with nothing left. Each caller words its own message, because it knows
the file, object or sample a box comes from.

The functions take one box as four Python numbers (the datasets read boxes one at a
time, and per-box numpy calls would cost ~10x on COCO's 860k boxes) or an (..., 4)
numpy array / torch tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtvision.utils.arrays import to_numpy

__all__ = ["clip_boxes", "first_invalid_box", "valid_boxes"]

_INF = float("inf")


def valid_boxes(boxes: Any, image_size: tuple[float, float] | None = None) -> Any:
    """Which boxes keep the rule (see the module docstring).

    Args:
        boxes: one box ``(x1, y1, x2, y2)`` of numbers, or an (..., 4) numpy array or
            torch tensor, xyxy pixels.
        image_size: ``(width, height)``: also require the box inside the image.

    Returns:
        ``bool`` for one box; a bool array / tensor of shape (...) for an array / tensor.
    """
    if hasattr(boxes, "shape"):
        x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    else:
        x1, y1, x2, y2 = boxes
    # Only operators, so one expression serves numbers, arrays and tensors. NaN fails
    # every comparison; abs() < inf refuses the infinities.
    valid = (x2 > x1) & (y2 > y1)
    valid = valid & (abs(x1) < _INF) & (abs(y1) < _INF) & (abs(x2) < _INF) & (abs(y2) < _INF)
    if image_size is not None:
        width, height = image_size
        valid = valid & (x1 >= 0) & (y1 >= 0) & (x2 <= width) & (y2 <= height)
    return valid


def first_invalid_box(boxes: Any, image_size: tuple[float, float] | None = None) -> int | None:
    """Index of the first of (N, 4) ``boxes`` (array or tensor) that breaks the rule, else None."""
    invalid = np.flatnonzero(~to_numpy(valid_boxes(boxes, image_size)))
    return int(invalid[0]) if invalid.size else None


def clip_boxes(boxes: Any, image_size: tuple[float, float]) -> Any:
    """Boxes clipped to ``[0, width] x [0, height]``: a tuple for one box of numbers, a
    new array for an (..., 4) numpy array. NaN stays NaN (and breaks the rule)."""
    width, height = image_size
    if isinstance(boxes, np.ndarray):
        clipped = boxes.copy()
        clipped[..., 0::2] = clipped[..., 0::2].clip(0, width)
        clipped[..., 1::2] = clipped[..., 1::2].clip(0, height)
        return clipped
    x1, y1, x2, y2 = boxes
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
