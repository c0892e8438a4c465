"""Read image files into the sample contract's array: HWC uint8 RGB.

Decoding is OpenCV's (``cv2.imdecode`` with ``IMREAD_UNCHANGED``, so the file's
own channel count and bit depth are seen and normalised here, explicitly):

- grayscale (H, W) or (H, W, 1) -> the gray value copied to R, G and B;
- BGRA -> alpha dropped (not composited: a transparent pixel keeps its stored
  colour, as in ``PIL.Image.convert("RGB")``);
- 16-bit -> 8-bit by ``round(v / 257)``, which maps 0..65535 exactly onto
  0..255 (65535 -> 255, 257 * k -> k);
- BGR -> RGB.

EXIF orientation is not applied (``IMREAD_UNCHANGED`` ignores it), the same
pixels ``PIL.Image.open`` and torchvision's ``ImageFolder`` give.

Every failure raises :class:`ImageLoadError` with a message that names the
file and the problem.
"""

from __future__ import annotations

import os
import re

import cv2
import numpy as np

from mtvision.errors import ImageLoadError

__all__ = ["ImageLoadError", "decode_image", "load_image"]

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = 0xD9
_JPEG_SOS = 0xDA
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8, _JPEG_EOI}
# Inside entropy-coded data a real marker is 0xFF followed by anything except
# 0x00 (a stuffed data byte), RST0-7 (restart markers) or 0xFF (fill).
_JPEG_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read the image file at ``path``.

    Returns:
        ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB, C-contiguous.

    Raises:
        ImageLoadError: the file is missing/unreadable, empty, not a decodable
            image, a truncated JPEG, or has an unsupported channel count or
            pixel type.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ImageLoadError(f"cannot load image {path!r}: {err.strerror or err}") from err
    return decode_image(data, source=path)


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, WebP, TIFF, ...).

    Args:
        data: the file's bytes.
        source: what to call the image in error messages (its path).

    Returns:
        ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB, C-contiguous.
    """
    if not data:
        raise ImageLoadError(f"cannot load image {source!r}: the file is empty (0 bytes)")
    if data.startswith(_JPEG_SOI) and _jpeg_ends_early(data):
        # Some libjpeg builds only warn on a premature end of data and return
        # an image whose missing rows are grey, so check the structure first.
        raise ImageLoadError(
            f"cannot load image {source!r}: truncated JPEG "
            f"({len(data)} bytes end before the end-of-image marker 0xFFD9)"
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ImageLoadError(f"cannot load image {source!r}: OpenCV failed to decode it") from err
    if image is None:
        raise ImageLoadError(
            f"cannot load image {source!r}: not a decodable image "
            f"(corrupt data or unsupported format, {len(data)} bytes starting {data[:8].hex()})"
        )
    return _to_rgb_uint8(image, source)


def _to_rgb_uint8(image: np.ndarray, source: str) -> np.ndarray:
    """Normalise a decoded OpenCV array (BGR order, any depth) to HWC uint8 RGB."""
    if image.dtype == np.uint16:
        image = np.rint(image / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageLoadError(
            f"cannot load image {source!r}: unsupported pixel type {image.dtype} "
            "(expected 8-bit or 16-bit unsigned integers)"
        )
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageLoadError(
        f"cannot load image {source!r}: unsupported channel count {channels} "
        "(expected 1 gray, 3 colour or 4 colour + alpha)"
    )


def _jpeg_ends_early(data: bytes) -> bool:
    """Whether the JPEG stream runs out before its end-of-image marker.

    Walks the marker segments from SOI, skipping each scan's entropy-coded
    data, to the first EOI. Bytes after EOI (camera trailers, appended gain
    maps or videos) are not read. A stream whose structure is broken in some
    other way returns False and is left to the decoder to reject.
    """
    pos = len(_JPEG_SOI)
    while pos + 1 < len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _JPEG_EOI:
            return False
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > len(data):
            return True
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _JPEG_SOS:
            found = _JPEG_MARKER_AFTER_SCAN.search(data, pos)
            if found is None:
                return True
            pos = found.start()
    return True
