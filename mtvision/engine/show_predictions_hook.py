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

Each head's fields are drawn by its task adapter (:mod:`mtvision.tasks`); which
heads ran comes from the test loop's model (its active heads and their tasks), so
a head named anything keeps its class names. Class names and palette come from
the test dataset's ``metainfo``, per head name (``metainfo["tasks"][head]`` for a
joined dataset, see :mod:`mtvision.utils.metainfo`), read for each batch, so a
multi-task test loop running several datasets names each one's classes. With
several evaluation entries (:class:`~mtvision.engine.MultiTaskTestLoop`), each
entry's pictures go into ``out_dir/<entry name>/``.

Under torchrun every process writes the pictures of its own images (the
sampler gives them disjoint images; a padding repeat rewrites the same file
atomically).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mtvision.data.image_io import load_image
from mtvision.registry import HOOKS
from mtvision.tasks.base import HeadInfo, Task, predicted_heads, registered_tasks
from mtvision.utils.atomic_files import atomic_write_bytes
from mtvision.visualization.draw import DrawOptions, draw_prediction
from mtvision.visualization.encoders import encode_png

__all__ = ["ShowPredictionsHook", "model_head_tasks"]


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
        heads = model_head_tasks(runner.model)
        for prediction in outputs or ():
            self.show(prediction, metainfo, out_dir, heads)

    def show(
        self,
        prediction: dict,
        metainfo: dict | None = None,
        out_dir: str | None = None,
        heads: Mapping[str, Task] | None = None,
    ) -> list[str]:
        """Write the picture(s) of one prediction; returns the paths written.

        Args:
            prediction: one image's prediction dict (see the module docstring).
            metainfo: the test dataset's ``metainfo`` (class names, palette).
            out_dir: folder to write to; default ``self.out_dir``.
            heads: ``{head name: task}`` of the heads that predicted (see
                :func:`model_head_tasks`); ``None``: each task whose fields the
                prediction holds, as a head named after its task.

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
        present = predicted_heads(prediction, heads)
        if not present:
            known = " or ".join(f"{task.name} ({task.fields[0]!r})" for task in registered_tasks())
            raise KeyError(
                f"ShowPredictionsHook draws {known} predictions; got keys {sorted(prediction)}"
            )
        image = load_image(meta["img_path"])
        out_dir = self.out_dir if out_dir is None else os.fspath(out_dir)
        stem = os.path.join(out_dir, os.path.splitext(os.path.basename(meta["img_path"]))[0])
        drawn, extra = [], {}
        for name, task in present.items():
            head = HeadInfo.from_metainfo(name, task, metainfo, self.classes, self.palette)
            fields = task.prepare_picture(prediction, image.shape, meta["img_path"])
            drawn.append((head, fields))
            for field, data in task.picture_files(fields, head).items():
                extra[(name, field)] = data
        # One file beside the picture is <stem>.png (a mask, as VOC names them), the
        # picture then <stem>_overlay.png; several are named by head and field.
        files: dict[str, bytes] = {}
        for (name, field), data in extra.items():
            files[f"{stem}.png" if len(extra) == 1 else f"{stem}_{name}_{field}.png"] = data
        options = DrawOptions(self.score_threshold, self.alpha, self.topk)
        picture = draw_prediction(image, drawn, options)
        files[f"{stem}_overlay.png" if extra else f"{stem}.png"] = encode_png(picture)
        os.makedirs(out_dir, exist_ok=True)
        for path, data in files.items():
            atomic_write_bytes(path, data)
        self.num_written += 1
        return list(files)


def model_head_tasks(model) -> dict[str, Task] | None:
    """``{head name: task}`` of a model's active heads (a ``MultiTaskModel`` or a deployed
    :class:`~mtvision.export.OnnxRuntimeModel`, wrapped or not); ``None`` for a model
    that does not say."""
    if is_model_wrapper(model):
        model = model.module
    tasks = getattr(model, "head_tasks", None)
    if tasks is None:
        return None
    return {name: tasks[name] for name in model.active_head_names}
