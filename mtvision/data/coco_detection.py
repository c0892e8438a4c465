"""COCO object detection dataset: an instances json plus an image folder, indexed by pycocotools.

Layout (mmdet's defaults)::

    data_root/
      annotations/instances_train2017.json
      annotations/instances_val2017.json
      train2017/<file_name>
      val2017/<file_name>

Labels: COCO category ids are not contiguous (1..90 with gaps); contiguous
label ``i`` is ``metainfo["category_ids"][i]``, the selected category ids in
ascending order, named ``metainfo["classes"][i]``. Predictions go back to COCO
ids through the same tuple.

Boxes: COCO ``bbox`` is ``[x, y, w, h]`` in pixels; samples carry xyxy pixels
``[x, y, x + w, y + h]`` clipped to the image size the json states. What is
kept as a training target:

- crowd regions (``iscrowd=1``) are not targets; COCOeval reads them from the
  json itself, so their images stay;
- boxes narrower or lower than 1 px after clipping (zero or negative size,
  outside the image, or slivers; mmdet drops ``w < 1 or h < 1`` too) are
  dropped: counted in ``num_dropped_boxes`` and logged once per dataset,
  naming the json, annotation ids and image files;
- images without annotations stay (evaluation must see them), unless
  ``filter_empty=True`` drops images left without targets (training only).

Malformed input fails while loading with an error naming the json (and the
annotation id): invalid JSON, a missing top-level key, an annotation without
``bbox``/``category_id``/``image_id``, a reference to an unknown image or
category id, duplicate ids. Missing or corrupt image files fail when the
pipeline's ``LoadImage`` reads them, naming the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from mmengine.logging import print_log
from pycocotools.coco import COCO

from mtvision.data.base_dataset import BaseDataset
from mtvision.errors import AnnotationError
from mtvision.registry import DATASETS

__all__ = ["CocoDetection"]

_MIN_BOX_SIDE = 1.0  # px, after clipping
_MAX_LISTED_DROPS = 20  # dropped boxes named one by one in the log


@DATASETS.register_module()
class CocoDetection(BaseDataset):
    """COCO instances json + image folder as detection samples.

    ``load_data_list`` gives one dict per image of the json (json order)::

        {"img_path": str,
         "boxes": float32 (N, 4) xyxy pixels, clipped to the image,
         "labels": int64 (N,) contiguous 0..C-1,
         "meta": {"img_id": int}}      # the COCO image id

    ``LoadImage`` keeps ``meta`` and adds ``img_path``/``ori_shape``.
    ``metainfo``: ``classes`` (names) and ``category_ids`` (COCO ids), label order.

    Args:
        data_root: folder that ``ann_file`` and ``data_prefix`` are relative to.
        ann_file: instances json.
        data_prefix: ``dict(img=<image folder>)``; ``file_name`` of the json
            is relative to it. Default ``dict(img="train2017/")``.
        classes: category names to use (a subset of the json's categories);
            ``None`` uses all. Labels follow ascending category id whatever the
            order given; annotations of other categories are ignored. Same as
            OpenMMLab's ``metainfo=dict(classes=...)``.
        filter_empty: drop images without any training target (no annotation,
            only crowd or dropped boxes). For training only: evaluation must
            keep every image, so ``test_mode=True`` refuses it.
        on_bad_image, pipeline, test_mode: see :class:`BaseDataset`.
        **kwargs: other ``BaseDataset`` arguments (``indices``, ``lazy_init``, ...).
    """

    def __init__(
        self,
        data_root: str | os.PathLike = "",
        ann_file: str = "annotations/instances_train2017.json",
        data_prefix: dict | None = None,
        classes: Sequence[str] | None = None,
        filter_empty: bool = False,
        on_bad_image: Literal["raise", "skip"] = "raise",
        pipeline: Sequence = (),
        test_mode: bool = False,
        **kwargs,
    ):
        if filter_empty and test_mode:
            raise ValueError(
                "filter_empty=True cannot be used with test_mode=True: evaluation must see "
                "every image, including those without annotations"
            )
        self.fixed_classes = None if classes is None else tuple(classes)
        self.filter_empty = filter_empty
        self.num_dropped_boxes = 0
        super().__init__(
            data_root=os.fspath(data_root),
            ann_file=ann_file,
            data_prefix=dict(img="train2017/") if data_prefix is None else data_prefix,
            on_bad_image=on_bad_image,
            pipeline=pipeline,
            test_mode=test_mode,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        coco = _load_coco(self.ann_file)
        category_ids = self._select_categories(coco)
        label_of = {cat_id: label for label, cat_id in enumerate(category_ids)}
        self._metainfo["category_ids"] = category_ids
        self._metainfo["classes"] = tuple(coco.cats[cat_id]["name"] for cat_id in category_ids)

        image_folder = self.data_prefix.get("img", "")
        dropped: list[str] = []
        data_list = []
        for img_id in coco.getImgIds():
            image = coco.imgs[img_id]
            boxes, labels = [], []
            for ann in coco.imgToAnns[img_id]:
                if ann["category_id"] not in label_of or ann.get("iscrowd", 0):
                    continue
                box, problem = _clipped_xyxy(ann["bbox"], image["width"], image["height"])
                if problem:
                    dropped.append(
                        f"annotation {ann['id']} of '{image['file_name']}' "
                        f"(bbox {ann['bbox']}): {problem}"
                    )
                    continue
                boxes.append(box)
                labels.append(label_of[ann["category_id"]])
            data_list.append(
                {
                    "img_path": os.path.join(image_folder, image["file_name"]),
                    "boxes": np.array(boxes, np.float32).reshape(-1, 4),
                    "labels": np.array(labels, np.int64),
                    "meta": {"img_id": img_id},
                }
            )
        self.num_dropped_boxes = len(dropped)
        if dropped:
            listed = "; ".join(dropped[:_MAX_LISTED_DROPS])
            more = len(dropped) - _MAX_LISTED_DROPS
            print_log(
                f"CocoDetection: dropped {len(dropped)} boxes of {self.ann_file} smaller than "
                f"{_MIN_BOX_SIDE:g} px after clipping to the image: {listed}"
                + (f"; and {more} more" if more > 0 else ""),
                logger="current",
                level=logging.WARNING,
            )
        return data_list

    def filter_data(self) -> list[dict]:
        if not self.filter_empty:
            return self.data_list
        kept = [info for info in self.data_list if len(info["labels"])]
        print_log(
            f"CocoDetection: filter_empty dropped {len(self.data_list) - len(kept)} of "
            f"{len(self.data_list)} images of {self.ann_file} without training boxes",
            logger="current",
            level=logging.INFO,
        )
        return kept

    def _select_categories(self, coco: COCO) -> tuple[int, ...]:
        """Category ids of the selected classes, ascending."""
        names = self.fixed_classes or tuple(self._metainfo.get("classes", ()))
        if not names:
            return tuple(sorted(coco.getCatIds()))
        known = {cat["name"] for cat in coco.cats.values()}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise AnnotationError(
                f"{self.ann_file}: classes {unknown} are not categories of this file "
                f"(it has {sorted(known)})"
            )
        return tuple(sorted(coco.getCatIds(catNms=list(names))))


def _load_coco(path: str) -> COCO:
    """Read and check a COCO instances json; index it with pycocotools."""
    try:
        with open(path, encoding="utf-8") as f:
            dataset = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"COCO annotation file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: invalid JSON: {err}") from err
    _check_instances(dataset, path)
    coco = COCO()
    coco.dataset = dataset
    # pycocotools prints progress on stdout; the checks above already reported problems.
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _check_instances(dataset: Any, path: str) -> None:
    """Raise ValueError naming ``path`` (and the annotation) on what pycocotools would
    misread silently or fail on deep inside: missing keys, dangling ids, bad boxes."""
    if not isinstance(dataset, dict):
        raise AnnotationError(f"{path}: expected a JSON object, got {type(dataset).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            problem = "missing" if key not in dataset else "not a list"
            raise AnnotationError(
                f"{path}: top-level key '{key}' is {problem} (a COCO instances file has "
                "'images', 'annotations' and 'categories' lists)"
            )
    image_ids = _checked_ids(dataset, "images", "image", ("file_name", "width", "height"), path)
    category_ids = _checked_ids(dataset, "categories", "category", ("name",), path)
    keys = ("image_id", "category_id", "bbox")
    _checked_ids(dataset, "annotations", "annotation", keys, path)

    for ann in dataset["annotations"]:
        where = f"{path}: annotation {ann['id']}"
        if ann["image_id"] not in image_ids:
            raise AnnotationError(
                f"{where} refers to image_id {ann['image_id']!r}, not in 'images'"
            )
        if ann["category_id"] not in category_ids:
            raise AnnotationError(
                f"{where} has category_id {ann['category_id']!r}, not in 'categories' "
                f"(ids {sorted(category_ids)})"
            )
        bbox = ann["bbox"]
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(_is_number(v) and math.isfinite(v) for v in bbox)
        ):
            raise AnnotationError(
                f"{where} has bbox {bbox!r}; expected [x, y, width, height] numbers"
            )
    for image in dataset["images"]:
        if not all(_is_number(image[key]) and image[key] > 0 for key in ("width", "height")):
            raise AnnotationError(
                f"{path}: image {image['id']} ('{image['file_name']}') has width "
                f"{image['width']!r} and height {image['height']!r}; expected positive numbers"
            )


def _checked_ids(
    dataset: dict, section: str, singular: str, keys: Sequence[str], path: str
) -> set[int]:
    """Integer ids of ``dataset[section]``, checking every entry has ``keys`` and a unique id."""
    ids: set[int] = set()
    for index, entry in enumerate(dataset[section]):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise AnnotationError(f"{path}: {section}[{index}] has no integer 'id': {entry!r:.200}")
        for key in keys:
            if key not in entry:
                raise AnnotationError(f"{path}: {singular} {entry['id']} has no '{key}'")
        if entry["id"] in ids:
            raise AnnotationError(f"{path}: {singular} id {entry['id']} appears more than once")
        ids.add(entry["id"])
    return ids


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _clipped_xyxy(bbox: Sequence[float], width: float, height: float) -> tuple[list, str]:
    """COCO [x, y, w, h] -> xyxy clipped to the image, and why it is unusable ('' if usable)."""
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return [], f"non-positive size {w:g} x {h:g}"
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return [], f"outside the {width:g} x {height:g} image"
    if x2 - x1 < _MIN_BOX_SIDE or y2 - y1 < _MIN_BOX_SIDE:
        return [], f"{x2 - x1:g} x {y2 - y1:g} px inside the image"
    return [x1, y1, x2, y2], ""
