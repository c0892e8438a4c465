"""The PASCAL VOC colour palette: how class-index masks are coloured for viewing.

VOC's ``SegmentationClass`` PNGs are palette images with this palette; the
synthetic VOC layout, the dataset's ``metainfo["palette"]`` and the pictures of
predicted masks all use it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["voc_colormap"]


def voc_colormap(size: int = 256) -> np.ndarray:
    """The PASCAL VOC palette: (size, 3) uint8, colour of index i by bit interleaving."""
    cmap = np.zeros((size, 3), np.uint8)
    for i in range(size):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap
