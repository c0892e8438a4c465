"""Write test-set predictions as pictures (tools/eval.py ``--show-dir``).

Every picture is drawn on the original image, read again from
``meta["img_path"]``, because detection boxes and segmentation masks are
predicted in original-image pixels. Files are named after the image:

- detection (predictions with ``boxes`` (K, 4) xyxy original pixels,
  ``scores`` (K,), ``labels`` (K,)): ``<stem>.png``, boxes scoring at least
  ``score_threshold`` with class names and scores;
- segmentation (predictions with ``pred_mask`` (H, W) int class map at the
  original size): ``<stem>.png``, the mask as a palette PNG (PIL mode "P",
  the VOC colormap, as VOC's SegmentationClass files), and
  ``<stem>_overlay.png``, the image blended with the mask's colours.

Under torchrun every process writes the pictures of its own images (the
sampler gives them disjoint images; a padding repeat rewrites the same file
atomically).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import cv2
import numpy as np
from mmengine.hooks import Hook
from PIL import Image

from mtvision.data.image_io import load_image
from mtvision.registry import HOOKS
from mtvision.utils.arrays import to_numpy
from mtvision.utils.atomic_files import atomic_write_bytes
from mtvision.utils.palette import voc_colormap
from mtvision.visualization.draw import draw_detections, draw_segmentation

__all__ = ["ShowPredictionsHook"]


def _encode_png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("OpenCV could not encode a PNG")
    return data.tobytes()


def _encode_palette_png(mask: np.ndarray, palette: np.ndarray) -> bytes:
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    png = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    # PIL palettes have 256 entries; unused ones stay black.
    full = np.zeros((256, 3), np.uint8)
    full[: len(palette)] = palette[:256]
    png.putpalette(full.tobytes())
    buffer = io.BytesIO()
    png.save(buffer, format="PNG")
    return buffer.getvalue()


@HOOKS.register_module()
class ShowPredictionsHook(Hook):
    """Save each test prediction as a picture in ``out_dir``.

    Args:
        out_dir: folder for the pictures (created).
        max_images: only images with ``meta["sample_idx"]`` below this are
            drawn, i.e. the first ``max_images`` of the test set however many
            processes share it; ``None`` draws all.
        score_threshold: detections scoring below this are not drawn.
        alpha: colour weight of segmentation overlays.
        classes: class names by label; ``None`` takes the test dataset's
            ``metainfo["classes"]`` when testing starts.
        palette: (N, 3) RGB colours of segmentation labels; ``None`` takes
            ``metainfo["palette"]`` when the dataset has one, else the VOC
            colormap.
    """

    priority = "LOW"

    def __init__(
        self,
        out_dir: str,
        max_images: int | None = None,
        score_threshold: float = 0.3,
        alpha: float = 0.5,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if max_images is not None and max_images < 0:
            raise ValueError(f"max_images must be >= 0 or None, got {max_images}")
        self.out_dir = os.fspath(out_dir)
        self.max_images = max_images
        self.score_threshold = score_threshold
        self.alpha = alpha
        self.classes = None if classes is None else list(classes)
        self.palette = None if palette is None else np.asarray(palette, np.uint8).reshape(-1, 3)
        self.num_written = 0

    def before_test(self, runner) -> None:
        metainfo = getattr(runner.test_loop.dataloader.dataset, "metainfo", None) or {}
        if self.classes is None and "classes" in metainfo:
            self.classes = list(metainfo["classes"])
        if self.palette is None and metainfo.get("palette") is not None:
            self.palette = np.asarray(metainfo["palette"], np.uint8).reshape(-1, 3)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for prediction in outputs or ():
            self.show(prediction)

    def show(self, prediction: dict) -> list[str]:
        """Write the picture(s) of one prediction; returns the paths written.

        Returns ``[]`` for an image beyond ``max_images``.
        """
        meta = prediction.get("meta", {})
        sample_idx = meta.get("sample_idx")
        if self.max_images is not None and sample_idx is not None and sample_idx >= self.max_images:
            return []
        if "img_path" not in meta:
            raise KeyError(
                f"ShowPredictionsHook needs meta['img_path']; got meta keys {sorted(meta)}"
            )
        image = load_image(meta["img_path"])
        stem = os.path.join(self.out_dir, os.path.splitext(os.path.basename(meta["img_path"]))[0])
        if "boxes" in prediction:
            drawn = draw_detections(
                image,
                to_numpy(prediction["boxes"]),
                to_numpy(prediction["labels"]),
                to_numpy(prediction["scores"]),
                self.classes,
                self.score_threshold,
            )
            files = {f"{stem}.png": _encode_png(drawn)}
        elif "pred_mask" in prediction:
            mask = to_numpy(prediction["pred_mask"])
            if mask.shape != image.shape[:2]:
                raise ValueError(
                    f"{meta['img_path']}: pred_mask is {mask.shape}, the image is "
                    f"{image.shape[:2]}; masks must be at the original size"
                )
            if mask.size and (mask.min() < 0 or mask.max() > 255):
                raise ValueError(
                    f"{meta['img_path']}: pred_mask labels {mask.min()}..{mask.max()} do not fit "
                    "a palette PNG (0..255)"
                )
            palette = self.palette if self.palette is not None else voc_colormap()
            overlay = draw_segmentation(image, mask, palette, self.alpha)
            files = {
                f"{stem}.png": _encode_palette_png(mask, palette),
                f"{stem}_overlay.png": _encode_png(overlay),
            }
        else:
            raise KeyError(
                "ShowPredictionsHook draws detection ('boxes') or segmentation ('pred_mask') "
                f"predictions; got keys {sorted(prediction)}"
            )
        os.makedirs(self.out_dir, exist_ok=True)
        for path, data in files.items():
            atomic_write_bytes(path, data)
        self.num_written += 1
        return list(files)
