"""Pictures and class maps as file bytes: JPEG/PNG of RGB images (OpenCV) and palette PNGs of
class maps (PIL mode "P", as PASCAL VOC's ``SegmentationClass`` files)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

__all__ = ["JPEG_QUALITY", "encode_jpeg", "encode_palette_png", "encode_png"]

JPEG_QUALITY = 95


def _encode(rgb: np.ndarray, suffix: str, *params: int) -> bytes:
    ok, data = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    if not ok:
        raise OSError(f"OpenCV could not encode a {suffix} picture")
    return data.tobytes()


def encode_png(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 RGB picture as PNG bytes."""
    return _encode(rgb, ".png")


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An (H, W, 3) uint8 RGB picture as JPEG bytes."""
    return _encode(rgb, ".jpg", cv2.IMWRITE_JPEG_QUALITY, int(quality))


def encode_palette_png(mask: np.ndarray, palette: np.ndarray) -> bytes:
    """An (H, W) uint8 class map as a palette PNG: pixel value = class index, colour of
    index i = ``palette[i]`` ((N, 3) uint8 RGB; PIL palettes have 256 entries, unused
    ones black)."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    png = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    full = np.zeros((256, 3), np.uint8)
    full[: min(len(palette), 256)] = palette[:256]
    png.putpalette(full.tobytes())
    buffer = io.BytesIO()
    png.save(buffer, format="PNG")
    return buffer.getvalue()
