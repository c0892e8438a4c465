"""Write test-set predictions as pictures (tools/eval.py ``--show-dir``).

Every picture is drawn on the original image, read again from
``meta["img_path"]``, because detection boxes and segmentation masks are
predicted in original-image pixels. A prediction may hold any of the three
heads' fields (a multi-task model merges them); one picture shows them all,
layered: the mask's colours, then the boxes, then the top-k classes below:

- segmentation (``pred_mask`` (H, W) int class map at the original size):
  ``<stem>.png`` is the mask as a palette PNG (PIL mode "P", the dataset's or
  the VOC colours, as VOC's SegmentationClass files) and the picture is
  ``<stem>_overlay.png``, the image blended with the mask's colours;
- detection (``boxes`` (K, 4) xyxy original pixels, ``scores`` (K,),
  ``labels`` (K,)): boxes scoring at least ``score_threshold`` with class
  names and scores; the picture is ``<stem>.png`` unless there is a mask;
- classification (``pred_score`` (K,)): the ``topk`` best classes with their
  scores in a caption below the image (the true class, ``gt_label``, in green).

Class names and palette come from the test dataset's ``metainfo``, per task
(``metainfo["tasks"][head]`` for a joined dataset, see
:mod:`mtvision.utils.metainfo`), read for each batch, so a multi-task test loop
running several datasets names each one's classes. With several evaluation
entries (:class:`~mtvision.engine.MultiTaskTestLoop`), each entry's pictures go
into ``out_dir/<entry name>/``.

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
from mtvision.utils.metainfo import task_metainfo
from mtvision.utils.palette import voc_colormap
from mtvision.visualization.draw import draw_prediction

__all__ = ["ShowPredictionsHook", "task_classes", "task_palette"]


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
            drawn, i.e. the first ``max_images`` of each test set however many
            processes share it; ``None`` draws all.
        score_threshold: detections scoring below this are not drawn.
        alpha: colour weight of segmentation overlays.
        topk: how many classes a classification caption lists.
        classes: class names by label for every task; ``None`` takes each
            task's ``classes`` from the test dataset's metainfo.
        palette: (N, 3) RGB colours of segmentation labels; ``None`` takes
            the segmentation ``palette`` of the test dataset's metainfo when it
            has one, else the VOC colormap.
    """

    priority = "LOW"

    def __init__(
        self,
        out_dir: str,
        max_images: int | None = None,
        score_threshold: float = 0.3,
        alpha: float = 0.5,
        topk: int = 5,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if max_images is not None and max_images < 0:
            raise ValueError(f"max_images must be >= 0 or None, got {max_images}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.out_dir = os.fspath(out_dir)
        self.max_images = max_images
        self.score_threshold = score_threshold
        self.alpha = alpha
        self.topk = topk
        self.classes = None if classes is None else list(classes)
        self.palette = None if palette is None else np.asarray(palette, np.uint8).reshape(-1, 3)
        self.num_written = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        loop = runner.test_loop
        metainfo = getattr(loop.dataloader.dataset, "metainfo", None) or {}
        out_dir = self.out_dir
        if len(getattr(loop, "entries", ())) > 1:
            out_dir = os.path.join(self.out_dir, loop.current_entry)
        for prediction in outputs or ():
            self.show(prediction, metainfo, out_dir)

    def show(
        self, prediction: dict, metainfo: dict | None = None, out_dir: str | None = None
    ) -> list[str]:
        """Write the picture(s) of one prediction; returns the paths written.

        Args:
            prediction: one image's prediction dict (see the module docstring).
            metainfo: the test dataset's ``metainfo`` (class names, palette).
            out_dir: folder to write to; default ``self.out_dir``.

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
        if not any(key in prediction for key in ("boxes", "pred_mask", "pred_score")):
            raise KeyError(
                "ShowPredictionsHook draws detection ('boxes'), segmentation ('pred_mask') or "
                f"classification ('pred_score') predictions; got keys {sorted(prediction)}"
            )
        image = load_image(meta["img_path"])
        out_dir = self.out_dir if out_dir is None else os.fspath(out_dir)
        stem = os.path.join(out_dir, os.path.splitext(os.path.basename(meta["img_path"]))[0])
        files: dict[str, bytes] = {}
        picture_path, palette = f"{stem}.png", None
        if "pred_mask" in prediction:
            mask = self._checked_mask(prediction["pred_mask"], image, meta["img_path"])
            palette = self._palette(metainfo)
            prediction = {**prediction, "pred_mask": mask}
            files[f"{stem}.png"] = _encode_palette_png(mask, palette)
            picture_path = f"{stem}_overlay.png"
        picture = draw_prediction(
            image,
            prediction,
            {task: self._classes(metainfo, task) for task in ("detection", "classification")},
            palette,
            self.score_threshold,
            self.alpha,
            self.topk,
        )
        files[picture_path] = _encode_png(picture)
        os.makedirs(out_dir, exist_ok=True)
        for path, data in files.items():
            atomic_write_bytes(path, data)
        self.num_written += 1
        return list(files)

    @staticmethod
    def _checked_mask(mask, image: np.ndarray, img_path: str) -> np.ndarray:
        mask = to_numpy(mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"{img_path}: pred_mask is {mask.shape}, the image is {image.shape[:2]}; "
                "masks must be at the original size"
            )
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(
                f"{img_path}: pred_mask labels {mask.min()}..{mask.max()} do not fit a palette "
                "PNG (0..255)"
            )
        return mask

    def _classes(self, metainfo: dict | None, task: str) -> list[str] | None:
        return self.classes if self.classes is not None else task_classes(metainfo, task)

    def _palette(self, metainfo: dict | None) -> np.ndarray:
        return self.palette if self.palette is not None else task_palette(metainfo)


def _task_meta(metainfo: dict | None, task: str) -> dict:
    """The task's metainfo, or {} when a multi-task dataset has none for it (numbers are drawn)."""
    try:
        return task_metainfo(metainfo, task)
    except KeyError:
        return {}


def task_classes(metainfo: dict | None, task: str) -> list[str] | None:
    """Class names of ``task`` (``"detection"``, ``"classification"``, ...) in a
    dataset's metainfo, or None when it has none (label numbers are drawn)."""
    classes = _task_meta(metainfo, task).get("classes")
    return None if classes is None else list(classes)


def task_palette(metainfo: dict | None) -> np.ndarray:
    """(N, 3) uint8 RGB colours of the segmentation labels: the metainfo's
    ``palette``, else the PASCAL VOC colour map."""
    palette = _task_meta(metainfo, "segmentation").get("palette")
    if palette is None:
        return voc_colormap()
    return np.asarray(palette, np.uint8).reshape(-1, 3)
