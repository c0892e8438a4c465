"""COCO object detection dataset: an instances json plus an image folder.

Layout (mmdet's defaults)::

    data_root/
      annotations/instances_train2017.json
      annotations/instances_val2017.json
      train2017/<file_name>
      val2017/<file_name>

The json is read, checked and normalised by
:func:`~mtvision.data.coco_annotations.load_coco_instances`, the same reader
:class:`~mtvision.evaluation.coco_metric.CocoMetric` uses (missing ``iscrowd``
is 0, missing ``area`` computed, ids checked; what is refused is listed there).

Labels: COCO category ids are not contiguous (1..90 with gaps); contiguous
label ``i`` is ``metainfo["category_ids"][i]``, the selected category ids in
ascending order, named ``metainfo["classes"][i]``. Predictions go back to COCO
ids through the same tuple, and the metric evaluates only those categories.

Sizes: the decoded image is the truth. An image entry's ``width``/``height``,
when present, is what the samples are clipped to here and what ``LoadImage``
checks against the decoded (EXIF-oriented) file: a disagreement is an
:class:`~mtvision.errors.AnnotationError` naming the json, the image file and
both sizes. When they are absent, the file's header gives them.

Boxes: COCO ``bbox`` is ``[x, y, w, h]`` in pixels; samples carry xyxy pixels
``[x, y, x + w, y + h]`` clipped to the image. What is kept as a training target:

- crowd regions (``iscrowd=1``) are not targets; COCOeval reads them from the
  json itself, so their images stay;
- boxes narrower or lower than 1 px after clipping (zero size, outside the
  image, or slivers; mmdet drops ``w < 1 or h < 1`` too) are dropped: counted
  in ``num_dropped_boxes`` and logged once per dataset, naming the json,
  annotation ids and image files;
- images without annotations stay (evaluation must see them), unless
  ``filter_empty=True`` drops images left without targets (training only).

Malformed input fails while loading with an error naming the json (and the
annotation or image id): everything the reader refuses, plus an image without
``file_name``, two images with the same ``file_name``, a category without
``name``, two categories with the same name. Missing or corrupt image files fail when the pipeline's ``LoadImage``
reads them, naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from mmengine.logging import print_log

from mtvision.data.base_dataset import BaseDataset
from mtvision.data.coco_annotations import load_coco_instances
from mtvision.data.image_io import read_image_size
from mtvision.data.label_space import model_label_of
from mtvision.errors import AnnotationError
from mtvision.registry import DATASETS
from mtvision.utils.boxes import clip_boxes, valid_boxes

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
         "width": int, "height": int,  # the image size the json states
         "ann_path": str,               # the json, named when LoadImage disagrees
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
        model_classes: the class names of the model this json is scored
            against, index = label (tools/eval.py and the val loop pass the
            checkpoint's / training data's, :mod:`~mtvision.data.label_space`).
            Each selected category is labelled by its name's index there, so
            a json lacking some categories (or numbering them otherwise)
            keeps the model's labels: ``metainfo["classes"]`` is then
            ``model_classes`` and ``metainfo["category_ids"]`` this json's id
            of each (``None`` for a model class the json lacks, logged once;
            the metric leaves those predictions out). A selected category
            that is no class of the model is an
            :class:`~mtvision.errors.AnnotationError` naming both lists.
        on_bad_image, pipeline, test_mode: see :class:`BaseDataset`.
        metainfo, indices, serialize_data, lazy_init, max_refetch: mmengine's
            ``BaseDataset`` arguments (``indices=N`` keeps the first N samples).
    """

    def __init__(
        self,
        data_root: str | os.PathLike = "",
        ann_file: str = "annotations/instances_train2017.json",
        data_prefix: dict | None = None,
        classes: Sequence[str] | None = None,
        filter_empty: bool = False,
        model_classes: Sequence[str] | None = None,
        on_bad_image: Literal["raise", "skip"] = "raise",
        pipeline: Sequence = (),
        test_mode: bool = False,
        metainfo: Mapping | None = None,
        indices: int | Sequence[int] | None = None,
        serialize_data: bool = True,
        lazy_init: bool = False,
        max_refetch: int = 1000,
    ):
        if filter_empty and test_mode:
            raise ValueError(
                "filter_empty=True cannot be used with test_mode=True: evaluation must see "
                "every image, including those without annotations"
            )
        self.fixed_classes = None if classes is None else tuple(classes)
        self.filter_empty = filter_empty
        self.model_classes = None if model_classes is None else tuple(map(str, model_classes))
        self.num_dropped_boxes = 0
        super().__init__(
            data_root=os.fspath(data_root),
            ann_file=ann_file,
            data_prefix=dict(img="train2017/") if data_prefix is None else data_prefix,
            on_bad_image=on_bad_image,
            pipeline=pipeline,
            test_mode=test_mode,
            metainfo=metainfo,
            indices=indices,
            serialize_data=serialize_data,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )

    def load_data_list(self) -> list[dict]:
        instances = load_coco_instances(self.ann_file)
        category_ids = self._select_categories(instances["categories"])
        name_of = {category["id"]: category["name"] for category in instances["categories"]}
        if self.model_classes is None:
            label_of = {cat_id: label for label, cat_id in enumerate(category_ids)}
            self._metainfo["category_ids"] = category_ids
            self._metainfo["classes"] = tuple(name_of[cat_id] for cat_id in category_ids)
        else:
            label_of = self._model_labels(category_ids, name_of)

        annotations_of: dict[int, list[dict]] = {image["id"]: [] for image in instances["images"]}
        for ann in instances["annotations"]:
            annotations_of[ann["image_id"]].append(ann)
        image_folder = self.data_prefix.get("img", "")
        first_id_of: dict[str, int] = {}
        dropped: list[str] = []
        data_list = []
        for image in instances["images"]:
            file_name = image["file_name"]
            if file_name is None:
                raise AnnotationError(f"{self.ann_file}: image {image['id']} has no 'file_name'")
            if file_name in first_id_of:
                raise AnnotationError(
                    f"{self.ann_file}: images {first_id_of[file_name]} and {image['id']} both "
                    f"have file_name '{file_name}'; each picture must be listed once (its "
                    "annotations would be split or counted twice)"
                )
            first_id_of[file_name] = image["id"]
            img_path = os.path.join(image_folder, file_name)
            width, height = image["width"], image["height"]
            if width is None or height is None:
                # The json does not say: the file's header does (EXIF orientation applied).
                width, height = read_image_size(img_path)
            boxes, labels = [], []
            for ann in annotations_of[image["id"]]:
                if ann["category_id"] not in label_of or ann["iscrowd"]:
                    continue
                box, problem = _clipped_xyxy(ann["bbox"], width, height)
                if problem:
                    dropped.append(
                        f"annotation {ann['id']} of '{file_name}' (bbox {ann['bbox']}): {problem}"
                    )
                    continue
                boxes.append(box)
                labels.append(label_of[ann["category_id"]])
            data_list.append(
                {
                    "img_path": img_path,
                    "boxes": np.array(boxes, np.float32).reshape(-1, 4),
                    "labels": np.array(labels, np.int64),
                    # What the annotation says (checked against the decoded image by LoadImage).
                    "width": width,
                    "height": height,
                    "ann_path": self.ann_file,
                    "meta": {"img_id": image["id"]},
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

    def _model_labels(self, category_ids, name_of: dict) -> dict[int, int]:
        """{selected category id: the model's label of its name}; sets the metainfo."""
        names = [name_of[cat_id] for cat_id in category_ids]
        label_of_name, absent = model_label_of(names, self.model_classes, self.ann_file)
        id_of = {name_of[cat_id]: cat_id for cat_id in category_ids}
        self._metainfo["classes"] = self.model_classes
        self.fixed_classes = tuple(names)  # the categories read, should the list be loaded again
        self._metainfo["category_ids"] = tuple(id_of.get(name) for name in self.model_classes)
        if absent:
            print_log(
                f"CocoDetection: {len(absent)} of the model's {len(self.model_classes)} classes "
                f"are not categories of {self.ann_file}: {', '.join(absent)}; they are scored "
                "as classes without objects (the other categories keep the model's labels)",
                logger="current",
                level=logging.WARNING,
            )
        return {id_of[name]: label for name, label in label_of_name.items()}

    def _select_categories(self, categories: list[dict]) -> tuple[int, ...]:
        """Category ids of the selected classes, ascending."""
        unnamed = [category["id"] for category in categories if category["name"] is None]
        if unnamed:
            raise AnnotationError(
                f"{self.ann_file}: categories {unnamed[:10]} have no 'name'; a dataset names "
                "its classes"
            )
        first_id_of: dict[str, int] = {}
        for category in categories:
            other = first_id_of.setdefault(category["name"], category["id"])
            if other != category["id"]:
                raise AnnotationError(
                    f"{self.ann_file}: categories {other} and {category['id']} are both named "
                    f"'{category['name']}'; class names must tell categories apart"
                )
        names = self.fixed_classes or tuple(self._metainfo.get("classes", ()))
        if not names:
            return tuple(sorted(category["id"] for category in categories))
        known = {category["name"] for category in categories}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise AnnotationError(
                f"{self.ann_file}: classes {unknown} are not categories of this file "
                f"(it has {sorted(known)})"
            )
        return tuple(sorted(c["id"] for c in categories if c["name"] in set(names)))


def _clipped_xyxy(bbox: Sequence[float], width: float, height: float) -> tuple[list, str]:
    """COCO [x, y, w, h] -> xyxy clipped to the image, and why it is unusable ('' if usable)."""
    x, y, w, h = bbox
    if not valid_boxes((x, y, x + w, y + h)):
        return [], f"non-positive size {w:g} x {h:g}" if w <= 0 or h <= 0 else "not finite"
    x1, y1, x2, y2 = clip_boxes((x, y, x + w, y + h), (width, height))
    if not valid_boxes((x1, y1, x2, y2)):
        return [], f"outside the {width:g} x {height:g} image"
    if x2 - x1 < _MIN_BOX_SIDE or y2 - y1 < _MIN_BOX_SIDE:
        return [], f"{x2 - x1:g} x {y2 - y1:g} px inside the image"
    return [x1, y1, x2, y2], ""
