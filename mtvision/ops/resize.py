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
