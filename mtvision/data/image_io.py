"""Read image files into the sample contract's array: HWC uint8 RGB, upright.

Decoding is OpenCV's (``cv2.imdecode`` with ``IMREAD_ANYDEPTH | IMREAD_ANYCOLOR``,
so the file's own channel count and bit depth are seen and normalised here,
explicitly):

- grayscale (H, W) or (H, W, 1) -> the gray value copied to R, G and B;
- alpha -> dropped (not composited: a transparent pixel keeps its stored
  colour, as in ``PIL.Image.convert("RGB")``);
- 16-bit -> 8-bit by ``round(v / 257)``, which maps 0..65535 exactly onto
  0..255 (65535 -> 255, 257 * k -> k);
- BGR -> RGB;
- EXIF orientation applied, by OpenCV itself (any flags but ``IMREAD_UNCHANGED``
  apply it): a phone photo stored sideways with an ``Orientation`` tag (2..8)
  is turned and/or mirrored to the picture viewers show, with the same pixels
  as ``PIL.ImageOps.exif_transpose`` (measured for JPEG, PNG ``eXIf``, WebP and
  TIFF, orientations 1..8; tests/test_image_io.py). This is what mmcv
  (``imfrombytes``), detectron2 (``read_image`` calls ``exif_transpose``) and
  annotation tools that work on the displayed picture assume, so boxes drawn on
  the displayed picture land on the right pixels. Widths and heights below are
  those of the upright image. One difference from PIL: OpenCV does not read the
  ``Raw profile type exif`` text chunk that ImageMagick writes into PNGs, so
  such a PNG stays as stored, and :func:`exif_orientation` /
  :func:`read_image_size` ignore that chunk too, to agree with the pixels.

:func:`image_from_pil` brings an already opened ``PIL.Image`` to the same
array (its EXIF orientation applied by ``PIL.ImageOps.exif_transpose``).

:func:`read_image_size` reads that upright size from the file header alone
(PIL opens files lazily), without decoding the pixels.

Every failure raises :class:`ImageLoadError` with a message that names the
file and the real reason: for a file the decoder refuses although its header
is valid (OpenCV's ``OPENCV_IO_MAX_IMAGE_PIXELS`` limit of 2**30 pixels, its
per-side limit ``OPENCV_IO_MAX_IMAGE_WIDTH``/``HEIGHT`` of 2**20, libpng's
1,000,000 pixels per side), the message gives the size read from the header,
the limit and how to raise it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image, ImageOps

from mtvision.errors import ImageLoadError

__all__ = [
    "ImageLoadError",
    "decode_image",
    "exif_orientation",
    "image_from_pil",
    "load_image",
    "read_image_size",
]

#: EXIF tag 0x0112: how the stored pixels must be turned to show the picture upright.
EXIF_ORIENTATION_TAG = 0x0112
# Orientations 5..8 turn the picture by 90 degrees: width and height swap.
_SWAPS_SIDES = (5, 6, 7, 8)
# Keeps the file's depth and channels (normalised below) and, unlike IMREAD_UNCHANGED,
# lets OpenCV apply the EXIF orientation (imgcodecs/src/loadsave.cpp).
_IMREAD_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR

# OpenCV's decode limits (imgcodecs/src/loadsave.cpp): environment variables, read
# once when OpenCV first decodes, and their defaults.
OPENCV_MAX_PIXELS_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
OPENCV_MAX_WIDTH_ENV = "OPENCV_IO_MAX_IMAGE_WIDTH"
OPENCV_MAX_HEIGHT_ENV = "OPENCV_IO_MAX_IMAGE_HEIGHT"
_OPENCV_DEFAULT_MAX_PIXELS = 1 << 30
_OPENCV_DEFAULT_MAX_SIDE = 1 << 20
# libpng's default user limit (PNG_USER_WIDTH_MAX / PNG_USER_HEIGHT_MAX), which
# OpenCV's PNG decoder keeps.
_LIBPNG_MAX_SIDE = 1_000_000

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = 0xD9
_JPEG_SOS = 0xDA
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8, _JPEG_EOI}
# Inside entropy-coded data a real marker is 0xFF followed by anything except
# 0x00 (a stuffed data byte), RST0-7 (restart markers) or 0xFF (fill).
_JPEG_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read the image file at ``path``, EXIF orientation applied.

    Returns:
        ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB, C-contiguous.

    Raises:
        ImageLoadError: the file is missing/unreadable, empty, not a decodable
            image, a truncated JPEG, above a decoder's size limit (size, limit
            and setting named), or has an unsupported channel count or pixel type.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ImageLoadError(
            f"cannot load image {path!r}: {err.strerror or err}{_case_hint(path, err)}"
        ) from err
    return decode_image(data, source=path)


def decode_image(data: bytes | bytearray | memoryview, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, WebP, TIFF, ...), EXIF orientation applied.

    Args:
        data: the file's bytes.
        source: what to call the image in error messages (its path).

    Returns:
        ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB, C-contiguous.

    Raises:
        ImageLoadError: as :func:`load_image`, naming ``source``.
    """
    data = bytes(data)
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
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _IMREAD_FLAGS)
    except cv2.error as err:
        raise ImageLoadError(
            f"cannot load image {source!r}: {_refusal_reason(data, _opencv_complaint(err))}"
        ) from err
    if image is None:
        raise ImageLoadError(f"cannot load image {source!r}: {_refusal_reason(data, None)}")
    return np.ascontiguousarray(_to_rgb_uint8(image, source))


def image_from_pil(image: Image.Image, source: str | None = None) -> np.ndarray:
    """An opened ``PIL.Image`` as :func:`load_image` returns its file: EXIF orientation
    applied (``PIL.ImageOps.exif_transpose``; an image already transposed carries no tag),
    any mode to RGB as :func:`decode_image` does (gray copied to R, G and B, alpha
    dropped, 16-bit gray by ``round(v / 257)``, a palette looked up).

    PIL itself reduces 16-bit colour PNGs to 8 bits (the high byte) when it opens them,
    so such a file given as a PIL image may differ by 1 from the file given as a path.

    Args:
        image: any ``PIL.Image.Image`` (opened from a file or made in memory).
        source: what to call it in error messages (default: its file name, if any).

    Returns:
        ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB, C-contiguous.

    Raises:
        ImageLoadError: PIL cannot decode the image's file (truncated, above PIL's
            decompression-bomb limit, ...), or a mode without an RGB meaning
            (32-bit float ``"F"``, 32-bit integers beyond 16 bits).
    """
    source = source or getattr(image, "filename", None) or "<PIL image>"
    try:
        upright = _pil_exif_transpose(image)
        if upright.mode in _PIL_16_BIT_GRAY:
            gray = np.asarray(upright)
            if gray.size and (gray.min() < 0 or gray.max() > 65535):
                raise ImageLoadError(
                    f"cannot load image {source!r}: PIL mode {upright.mode!r} values "
                    f"{gray.min()}..{gray.max()} are not 16-bit gray levels"
                )
            return _to_rgb_uint8(gray.astype(np.uint16), source)
        if upright.mode == "F":
            raise ImageLoadError(
                f"cannot load image {source!r}: unsupported pixel type float32 (PIL mode 'F'; "
                "expected 8-bit or 16-bit unsigned integers)"
            )
        with warnings.catch_warnings():
            # "Palette images with Transparency expressed in bytes should be converted to
            # RGBA": the alpha is dropped anyway, as for files.
            warnings.simplefilter("ignore", UserWarning)
            rgb = upright.convert("RGB")
        return np.array(rgb, dtype=np.uint8, order="C")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, ImageLoadError):
            raise
        raise ImageLoadError(f"cannot load image {source!r}: PIL cannot decode it ({err})") from err


# PIL modes of 16-bit gray images ("I" is what some Pillow versions give 16-bit PNGs).
_PIL_16_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _pil_exif_transpose(image: Image.Image) -> Image.Image:
    """``ImageOps.exif_transpose`` with the orientation :func:`exif_orientation` reads
    (a broken or PNG-text-chunk EXIF block: left as stored, as for files)."""
    if _orientation_of(image) == 1:
        return image
    return ImageOps.exif_transpose(image)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the image :func:`load_image` would return, from the header only.

    EXIF orientations 5..8 swap the stored width and height, as loading does.

    Raises:
        ImageLoadError: the file is missing, unreadable or not an image PIL
            can identify (the message names the file and PIL's reason).
    """
    path = os.fspath(path)
    try:
        with _header_only(), Image.open(path) as image:
            width, height = _stored_size(image)
            orientation = _orientation_of(image)
    except OSError as err:
        if isinstance(err, FileNotFoundError | PermissionError | IsADirectoryError):
            reason = f"{err.strerror}{_case_hint(path, err)}"
        else:
            reason = f"not a readable image ({err})"
        raise ImageLoadError(f"cannot load image {path!r}: {reason}") from err
    return (height, width) if orientation in _SWAPS_SIDES else (width, height)


def exif_orientation(data: bytes | str | os.PathLike) -> int:
    """The EXIF ``Orientation`` (1..8) of encoded image bytes or a file; 1 when absent,
    unreadable or out of range."""
    try:
        source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else os.fspath(data)
        with _header_only(), Image.open(source) as image:
            return _orientation_of(image)
    except (OSError, SyntaxError, ValueError):
        return 1


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the pixels as stored, before any EXIF orientation."""
    tags = getattr(image, "tag_v2", None)  # a TIFF's own directory
    if tags is not None and isinstance(tags.get(256), int) and isinstance(tags.get(257), int):
        # Recent Pillow reports a TIFF's size already turned by its Orientation tag.
        return tags[256], tags[257]
    return image.size


def _orientation_of(image: Image.Image) -> int:
    """The EXIF orientation OpenCV applies when it decodes ``image``'s file (1 when none)."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, TypeError):  # a broken EXIF block: ignore it
        return 1
    if image.format == "PNG" and "exif" not in image.info:
        # PIL also reads ImageMagick's "Raw profile type exif" text chunk; OpenCV reads the
        # eXIf chunk only, and the size read from the header must match the decoded pixels.
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


@contextlib.contextmanager
def _header_only() -> Iterator[None]:
    """Let PIL read a header of any size: nothing is decoded, so its decompression-bomb
    check (which refuses to even open files above 2 x 89 megapixels) does not apply.
    PIL's warnings about corrupt EXIF blocks are silenced: such a block is ignored."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _opencv_complaint(err: cv2.error) -> str:
    """The part of an OpenCV error that says what went wrong (not the source location)."""
    text = " ".join(str(err).split())
    found = re.search(r"error: \(-?\d+:([^)]*)\) (.*?)(?: in function '(\w+)')?$", text)
    if found is None:
        return text
    kind, what, function = found.groups()
    return f"{kind.strip()}: {what.strip()}" + (f" (in {function})" if function else "")


def _env_limit(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _refusal_reason(data: bytes, complaint: str | None) -> str:
    """Why OpenCV refused ``data``: a decoder limit when the header shows one is exceeded,
    else OpenCV's own complaint, else a corrupt or unsupported file."""
    try:
        with _header_only(), Image.open(io.BytesIO(data)) as image:
            width, height, kind = *image.size, image.format
    except (OSError, SyntaxError, ValueError):
        width = height = kind = None
    if width is not None:
        size = f"{width}x{height} (width x height, {width * height} pixels)"
        # In the order the decoders check: libpng while reading the PNG header,
        # then OpenCV on the size the header gave.
        if kind == "PNG" and max(width, height) > _LIBPNG_MAX_SIDE:
            return (
                f"its PNG header gives a size of {size}; libpng, OpenCV's PNG decoder, refuses "
                f"PNG images wider or taller than {_LIBPNG_MAX_SIDE} pixels; split or reduce it"
            )
        max_pixels = _env_limit(OPENCV_MAX_PIXELS_ENV, _OPENCV_DEFAULT_MAX_PIXELS)
        if width * height > max_pixels:
            return (
                f"its {kind} header gives a size of {size}, which exceeds OpenCV's decode limit "
                f"of {max_pixels} pixels; set the environment variable {OPENCV_MAX_PIXELS_ENV} "
                "to a larger value before the process starts, or reduce the image"
            )
        for side, value, env in (
            ("width", width, OPENCV_MAX_WIDTH_ENV),
            ("height", height, OPENCV_MAX_HEIGHT_ENV),
        ):
            limit = _env_limit(env, _OPENCV_DEFAULT_MAX_SIDE)
            if value > limit:
                return (
                    f"its {kind} header gives a size of {size}; its {side} exceeds OpenCV's "
                    f"limit of {limit} pixels per side; set the environment variable {env} "
                    "before the process starts, or reduce the image"
                )
        what = f"a {kind} image of {size} by its header, but OpenCV could not decode it"
    else:
        what = "not a decodable image (corrupt data or unsupported format"
        what += f", {len(data)} bytes starting {data[:8].hex()})"
    return what + (f": {complaint}" if complaint else "")


def _case_hint(path: str, err: OSError) -> str:
    """For a missing file: a broken link's target, or a file in the same folder whose
    name differs only in case."""
    if not isinstance(err, FileNotFoundError):
        return ""
    if os.path.islink(path):
        return f" (a symbolic link to {os.readlink(path)!r}, which does not exist)"
    folder, name = os.path.split(path)
    try:
        others = [n for n in os.listdir(folder or ".") if n.lower() == name.lower() and n != name]
    except OSError:
        return ""
    return f" (the folder has {others[0]!r}: file names are case-sensitive)" if others else ""


def _to_rgb_uint8(image: np.ndarray, source: str) -> np.ndarray:
    """Normalise a decoded OpenCV array (BGR order, any depth) to HWC uint8 RGB (a gray
    array, from OpenCV or PIL, is the same in either order)."""
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
