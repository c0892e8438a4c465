"""Bilinear resizing of batches of maps, as every resize inside mtvision's models does it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize(x: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of (N, C, h, w) to (N, C, *size); ``x`` itself at the same size.

    ``align_corners=False`` maps pixel centres (PyTorch's and mmseg's convention);
    ``True`` aligns the corner pixels, as TF-DeepLab (and its TFLite files) resize.
    """
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def resize_asymmetric(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (N, C, h, w) to (N, C, *size) with TF1's legacy rule
    (``ResizeBilinear`` with ``align_corners=False, half_pixel_centers=False``; ONNX's
    ``coordinate_transformation_mode="asymmetric"``): output index i reads source
    coordinate ``i * h / size[0]``, clamped to the last row (and so for columns).

    PyTorch has no such mode; it is the corner-aligned resize of the map padded with a
    copy of its last row and column to (h + 1, w + 1), onto (size[0] + 1, size[1] + 1),
    whose last row and column are dropped: there output index i reads
    ``i * h / size[0]`` too, and the padding is the clamp. Google's MLPerf DeepLabv3+
    file resizes this way.
    """
    height, width = (int(s) for s in size)
    padded = F.pad(x, (0, 1, 0, 1), mode="replicate")
    resized = F.interpolate(
        padded, size=(height + 1, width + 1), mode="bilinear", align_corners=True
    )
    return resized[..., :height, :width]
