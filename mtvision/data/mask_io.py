"""Read segmentation masks stored as index PNGs into the sample's ``mask``.

A segmentation mask file holds one class index per pixel, 255 = ignore:

- PASCAL VOC ``SegmentationClass/*.png`` are palette ('P') PNGs: the pixel
  values are palette *indices* (the class), the palette only colours them for
  viewing. PIL's ``np.asarray(Image.open(path))`` returns the indices; OpenCV
  would return the palette colours, so masks are read with PIL.
- SBD-augmented ``SegmentationClassAug/*.png`` are grayscale ('L') PNGs whose
  values are the indices.

Colour ('RGB'/'RGBA') masks are refused: turning colours back into classes
needs the palette they were drawn with, and guessing it silently gives wrong
labels. Every failure raises :class:`MaskLoadError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from mtvision.errors import MaskLoadError
from mtvision.registry import TRANSFORMS

__all__ = ["INDEX_MASK_MODES", "LoadMask", "MaskLoadError", "check_mask_values", "load_index_mask"]

#: PIL image modes whose pixel values are class indices.
INDEX_MASK_MODES = ("P", "L")

_MAX_LISTED_VALUES = 10


def load_index_mask(path: str | os.PathLike) -> np.ndarray:
    """Read the class-index mask at ``path``.

    Returns:
        ``np.ndarray`` (H, W) uint8, C-contiguous: the palette indices of a
        'P' PNG or the gray values of an 'L' PNG.

    Raises:
        MaskLoadError: the file is missing or not a decodable image, or its
            mode is not 'P' or 'L' (colour masks get a hint to convert them).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            mode = image.mode
            mask = np.array(image, dtype=np.uint8) if mode in INDEX_MASK_MODES else None
    except FileNotFoundError as err:
        raise MaskLoadError(f"cannot load mask {path!r}: {err.strerror}") from err
    # PIL reports corrupt files as UnidentifiedImageError/OSError, broken PNG
    # chunks as SyntaxError or ValueError.
    except (OSError, SyntaxError, ValueError) as err:
        raise MaskLoadError(f"cannot load mask {path!r}: not a readable image ({err})") from err
    if mask is None:
        raise MaskLoadError(f"cannot load mask {path!r}: {_mode_problem(mode)}")
    return np.ascontiguousarray(mask)


def _mode_problem(mode: str) -> str:
    if mode in ("RGB", "RGBA"):
        return (
            f"it is a colour ({mode}) image, but masks must be index PNGs (mode 'P' with a "
            "palette, or 'L' grayscale) whose pixel values are class indices, 255 = ignore; "
            "convert colour masks to indices with the palette they were drawn with, e.g. "
            "map each VOC palette colour to its index and save with Image.fromarray(index, 'L')"
        )
    return (
        f"unsupported image mode {mode!r}; masks must be index PNGs (mode 'P' or 'L') whose "
        "pixel values are class indices, 255 = ignore"
    )


def check_mask_values(mask: np.ndarray, num_classes: int, ignore_index: int, source: str) -> None:
    """Raise :class:`MaskLoadError` if ``mask`` holds a value that is neither a class
    index (0..num_classes-1) nor ``ignore_index``; the message lists the values."""
    counts = np.bincount(mask.ravel(), minlength=256)
    counts[:num_classes] = 0
    counts[ignore_index] = 0
    bad = np.flatnonzero(counts)
    if bad.size:
        listed = ", ".join(str(v) for v in bad[:_MAX_LISTED_VALUES])
        more = f" and {bad.size - _MAX_LISTED_VALUES} more" if bad.size > _MAX_LISTED_VALUES else ""
        raise MaskLoadError(
            f"cannot load mask {source!r}: values {listed}{more} "
            f"({int(counts[bad].sum())} pixels) are neither a class index "
            f"(0..{num_classes - 1}) nor the ignore index {ignore_index}"
        )


@TRANSFORMS.register_module()
class LoadMask:
    """Read ``seg_path`` into ``mask`` (H, W) uint8, class indices with 255 = ignore.

    Runs after :class:`~mtvision.data.transforms.LoadImage`: it checks the
    mask against the image file's size (``meta["ori_shape"]``, as loaded).
    In training pipelines it comes before the augmentations, which then move
    image and mask together. A test pipeline may put it after a resize (as
    mmseg's test pipelines do): the mask then stays at the original size,
    where predictions are scored, while the network sees the resized image.
    Adds ``seg_path`` to ``meta``. A sample's ``label_map`` (``{mask value:
    label}``, set by a dataset that selects a subset of its classes) relabels
    the checked mask; values it does not list become ``ignore_index``.

    Args:
        num_classes: valid values are 0..num_classes-1 and ``ignore_index``.
            ``None`` takes ``num_classes`` from the sample, where
            :class:`~mtvision.data.voc_segmentation.VOCSegmentation` puts the
            length of its ``metainfo["classes"]``.
        ignore_index: the "not labelled" value (VOC's object boundaries).

    Raises:
        MaskLoadError: unreadable or colour mask, values outside the classes
            (listed), or a mask whose size differs from the image's (both files
            named).
    """

    #: It reads the sample's files: an inference pipeline, which has no annotations,
    #: leaves it out (:func:`mtvision.engine.model_source.inference_pipeline`).
    reads_files = True

    def __init__(self, num_classes: int | None = None, ignore_index: int = 255) -> None:
        if num_classes is not None and not 1 <= num_classes <= 255:
            raise ValueError(f"LoadMask: num_classes must be in 1..255, got {num_classes}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"LoadMask: ignore_index must be in 0..255, got {ignore_index}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __call__(self, results: dict) -> dict:
        if "image" not in results:
            raise KeyError("LoadMask needs the loaded image: put LoadImage before it")
        seg_path = results["seg_path"]
        num_classes = self.num_classes or results.get("num_classes")
        if num_classes is None:
            raise KeyError(
                f"LoadMask: {seg_path!r}: no num_classes given and the sample has none "
                "(pass LoadMask(num_classes=...))"
            )
        mask = load_index_mask(seg_path)
        image_shape = tuple(results.get("meta", {}).get("ori_shape", results["image"].shape[:2]))
        if mask.shape != image_shape:
            raise MaskLoadError(
                f"cannot load mask {seg_path!r}: its size {mask.shape[1]}x{mask.shape[0]} (WxH) "
                f"differs from its image {results['img_path']!r}, "
                f"{image_shape[1]}x{image_shape[0]}"
            )
        check_mask_values(mask, num_classes, self.ignore_index, seg_path)
        if results.get("label_map"):
            lookup = np.full(256, self.ignore_index, np.uint8)
            for value, label in results["label_map"].items():
                lookup[value] = label
            mask = lookup[mask]
        meta = {**results.get("meta", {}), "seg_path": seg_path}
        return {**results, "mask": mask, "meta": meta}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, "
            f"ignore_index={self.ignore_index})"
        )
