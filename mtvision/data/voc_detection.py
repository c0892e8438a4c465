"""PASCAL VOC object detection dataset (one year's ``VOCdevkit/VOC20xx`` folder).

Layout::

    VOCdevkit/VOC2007/               <- data_root
      Annotations/<id>.xml
      ImageSets/Main/<split>.txt     <- ann_file, one image id per line
      JPEGImages/<id>.jpg

Several years (the usual "07+12" trainval) are combined with mmengine's
``ConcatDataset``; the years share ``metainfo`` so it accepts them::

    dataset = dict(type="ConcatDataset", datasets=[
        dict(type="VOCDetection", data_root="data/VOCdevkit/VOC2007",
             ann_file="ImageSets/Main/trainval.txt", pipeline=train_pipeline),
        dict(type="VOCDetection", data_root="data/VOCdevkit/VOC2012",
             ann_file="ImageSets/Main/trainval.txt", pipeline=train_pipeline),
    ])

Coordinates: VOC XML boxes are 1-based inclusive pixel indices: ``xmin=1,
xmax=W`` covers the whole width. They become continuous xyxy pixel edges
(the sample contract, same as COCO) by ``x1 = xmin - 1, y1 = ymin - 1,
x2 = xmax, y2 = ymax`` (detectron2's conversion), so ``x2 - x1`` is the
width in pixels and an IoU computed on these boxes without any "+1" equals
the VOC devkit's IoU on the raw indices (which adds 1 to widths). mmdet
subtracts 1 from all four values instead; torchvision returns the raw text.

Sizes: the decoded image is the truth. A positive ``<size>`` is what boxes are
clipped to here and what ``LoadImage`` checks against the decoded
(EXIF-oriented) file, naming the XML, the image and both sizes when they
differ. Without ``<size>`` (or with a zero one, as some tools write) the
image file's header gives the size. So a box that a 0-based tool wrote with
``xmin=0`` (``x1 = -1`` here) is clipped to the image either way.

Duplicates: an object listed twice in one XML (same class, box and
``difficult`` flag), as annotation tools' exports sometimes write, is kept
once; one warning per dataset names the XML files and object indices (kept,
the copy would be an object no detection can match, lowering AP).

Classes: the default is the 20 VOC classes, and an object of any other name
is an error naming its XML (a typo or another dataset). A dataset built with
``classes=(...)`` (or ``metainfo=dict(classes=...)``) that differ from the
default *selects* them, as mmdet does: objects of other classes are left out
of the training targets and of ``meta["ann"]`` (so the metric evaluates only
the selected classes), counted and logged once per dataset.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from mmengine.logging import print_log

from mtvision.data.base_dataset import BaseDataset
from mtvision.data.image_io import read_image_size
from mtvision.data.label_space import model_label_of
from mtvision.data.voc_segmentation import VOC_CLASSES, read_id_list
from mtvision.errors import AnnotationError, ImageLoadError
from mtvision.registry import DATASETS
from mtvision.utils.boxes import clip_boxes, valid_boxes

__all__ = ["VOC_DETECTION_CLASSES", "VOCDetection"]

_MAX_LISTED_DUPLICATES = 10  # duplicate objects named one by one in the warning

VOC_DETECTION_CLASSES: tuple[str, ...] = tuple(c for c in VOC_CLASSES if c != "background")
"""The 20 PASCAL VOC object classes; a class's index is its detection label."""


@DATASETS.register_module()
class VOCDetection(BaseDataset):
    """PASCAL VOC detection: images listed in ``ann_file``, boxes from their XML files.

    ``load_data_list`` gives one dict per listed id (list order)::

        {"img_path": str,                          # JPEGImages/<id>.jpg
         "boxes": float32 (N, 4) xyxy pixels,      # training targets:
         "labels": int64 (N,),                     #   objects not marked difficult
         "meta": {"img_id": str,                   # the file stem, e.g. "000005"
                  "ann": {"boxes": float32 (M, 4), # ALL objects, original pixels,
                          "labels": int64 (M,),    #   for the VOC metric
                          "difficult": bool (M,)}}}

    ``metainfo["classes"]``: class names, index = label.

    Args:
        data_root: the year folder, e.g. ``VOCdevkit/VOC2007``.
        ann_file: list of image ids, relative to ``data_root``.
        data_prefix: ``dict(img=<image folder>, ann=<XML folder>)`` relative to
            ``data_root``; default ``JPEGImages`` and ``Annotations``.
        classes: class names in label order; default the 20 VOC classes
            (:data:`VOC_DETECTION_CLASSES`), where an object of another class
            is an error naming its XML file. Other classes select: objects of
            classes not listed are left out (counted and logged).
        img_suffix: image file ending after the id (``".jpg"`` in VOC).
        model_classes: the class names of the model this split is scored
            against (tools/eval.py and the val loop pass them,
            :mod:`~mtvision.data.label_space`): each class keeps the model's
            label of its name (``metainfo["classes"]`` is then
            ``model_classes``); a class that is no class of the model is an
            :class:`~mtvision.errors.AnnotationError` naming both lists.
        on_bad_image, pipeline, test_mode: see :class:`BaseDataset`.
        metainfo, indices, serialize_data, lazy_init, max_refetch: mmengine's
            ``BaseDataset`` arguments (``indices=N`` keeps the first N samples).

    Raises (while loading), naming the file: ``FileNotFoundError`` for a
    missing list file or a listed id without XML; ``AnnotationError`` for an
    empty list, an id listed twice, malformed XML, an unknown class name, a
    missing or non-numeric box coordinate, or a box empty after clipping
    (``xmax < xmin``, or outside the image).
    """

    METAINFO = {"classes": VOC_DETECTION_CLASSES}

    def __init__(
        self,
        data_root: str | os.PathLike,
        ann_file: str = "ImageSets/Main/trainval.txt",
        data_prefix: dict | None = None,
        classes: Sequence[str] | None = None,
        img_suffix: str = ".jpg",
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
        self.fixed_classes = None if classes is None else tuple(classes)
        self.img_suffix = img_suffix
        self.model_classes = None if model_classes is None else tuple(map(str, model_classes))
        self.num_unselected_objects = 0
        super().__init__(
            data_root=os.fspath(data_root),
            ann_file=ann_file,
            data_prefix=dict(img="JPEGImages", ann="Annotations")
            if data_prefix is None
            else data_prefix,
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
        classes = self.fixed_classes or tuple(self._metainfo["classes"])
        if self.model_classes is None:
            self._metainfo["classes"] = classes
            label_of = {name: label for label, name in enumerate(classes)}
        else:
            label_of, absent = model_label_of(classes, self.model_classes, self.data_root)
            self._metainfo["classes"] = self.model_classes
            self.fixed_classes = classes  # the classes read, should the list be loaded again
            if absent:
                print_log(
                    f"VOCDetection: the model's classes {absent} are not among the classes "
                    f"{list(classes)} of {self.data_root}; they are scored as classes without "
                    "objects",
                    logger="current",
                    level=logging.WARNING,
                )
        selecting = classes != VOC_DETECTION_CLASSES

        data_list = []
        duplicates: list[str] = []
        unselected: Counter[str] = Counter()
        for img_id in self._read_image_ids():
            xml_path = os.path.join(self.data_prefix["ann"], f"{img_id}.xml")
            if not os.path.isfile(xml_path):
                raise FileNotFoundError(
                    f"annotation file {xml_path} does not exist (image id {img_id!r} is "
                    f"listed in {self.ann_file})"
                )
            img_path = os.path.join(self.data_prefix["img"], f"{img_id}{self.img_suffix}")
            root = _parse_xml(xml_path)
            size = _image_size(root) or self._size_from_file(img_path)
            boxes, labels, difficult, skipped = _parse_objects(
                root, xml_path, label_of, size, selecting, duplicates
            )
            unselected.update(skipped)
            keep = ~difficult
            info = {
                "img_path": img_path,
                "boxes": boxes[keep],
                "labels": labels[keep],
                "ann_path": xml_path,
                "meta": {
                    "img_id": img_id,
                    "ann": {"boxes": boxes, "labels": labels, "difficult": difficult},
                },
            }
            if size is not None:
                info["width"], info["height"] = size
            data_list.append(info)
        if duplicates:
            print_log(
                f"VOCDetection: dropped {len(duplicates)} duplicate object"
                f"{'s' if len(duplicates) > 1 else ''} of {self.data_root} (an exact copy of an "
                "earlier object of its XML: same class, box and difficult flag): "
                f"{'; '.join(duplicates[:_MAX_LISTED_DUPLICATES])}"
                + (
                    f"; and {len(duplicates) - _MAX_LISTED_DUPLICATES} more"
                    if len(duplicates) > _MAX_LISTED_DUPLICATES
                    else ""
                ),
                logger="current",
                level=logging.WARNING,
            )
        self.num_unselected_objects = sum(unselected.values())
        if unselected:
            counts = ", ".join(f"{name} {count}" for name, count in sorted(unselected.items()))
            print_log(
                f"VOCDetection: left out {self.num_unselected_objects} objects of "
                f"{self.data_root} whose class is not among the selected {list(classes)}: "
                f"{counts}",
                logger="current",
                level=logging.INFO,
            )
        return data_list

    def _size_from_file(self, img_path: str) -> tuple[int, int] | None:
        """(width, height) of the image file's header, for an XML without ``<size>``."""
        try:
            return read_image_size(img_path)
        except ImageLoadError:
            if self.on_bad_image == "skip":
                return None  # LoadImage fails on it again, and the sample is skipped
            raise

    def _read_image_ids(self) -> list[str]:
        if not os.path.isfile(self.ann_file):
            raise FileNotFoundError(
                f"VOC image list {self.ann_file} does not exist; expected "
                f"{os.path.join('<data_root>', 'ImageSets', 'Main', '<split>.txt')} in "
                f"data_root {self.data_root}"
            )
        return read_id_list(self.ann_file)


def _parse_xml(path: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as err:
        empty = " (the file is empty)" if os.path.getsize(path) == 0 else ""
        raise AnnotationError(f"{path}: malformed XML{empty}: {err}") from err


def _parse_objects(
    root: ET.Element,
    path: str,
    label_of: dict[str, int],
    image_size: tuple[float, float] | None,
    selecting: bool,
    duplicates: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Objects of one VOC XML: boxes float32 (M, 4) xyxy pixel edges clipped to
    ``image_size`` (width, height), labels int64 (M,), difficult bool (M,), and the
    class names of objects left out because ``selecting`` and not in ``label_of``.
    An object repeating an earlier one exactly (class, box, difficult) is left
    out and named in ``duplicates`` ("<xml>: object j (copy of i)")."""
    boxes, labels, difficult, skipped = [], [], [], []
    first_of: dict[tuple, int] = {}
    for index, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"{path}: object {index} ({name})"
        if name not in label_of:
            if selecting:
                skipped.append(name)
                continue
            raise AnnotationError(
                f"{where} has class name {name!r}, not one of the dataset's classes "
                f"{sorted(label_of)}"
            )
        xmin, ymin, xmax, ymax = (
            _coordinate(obj, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        box = (xmin - 1, ymin - 1, xmax, ymax)
        if image_size is not None:
            box = clip_boxes(box, image_size)
        if not valid_boxes(box):
            raise AnnotationError(
                f"{where} has an empty box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} "
                f"ymax={ymax:g} (image size {image_size})"
            )
        is_difficult = obj.findtext("difficult", "0").strip() in ("1", "true", "True")
        key = (name, *(float(v) for v in box), is_difficult)
        if key in first_of:
            duplicates.append(f"{path}: object {index} (copy of {first_of[key]})")
            continue
        first_of[key] = index
        boxes.append(list(box))
        labels.append(label_of[name])
        difficult.append(is_difficult)
    return (
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.array(difficult, bool),
        skipped,
    )


def _image_size(root: ET.Element) -> tuple[float, float] | None:
    """(width, height) from <size>, or ``None`` when absent or not positive numbers."""
    try:
        width, height = float(root.findtext("size/width")), float(root.findtext("size/height"))
    except (TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _coordinate(obj: ET.Element, tag: str, where: str) -> float:
    text = obj.findtext(f"bndbox/{tag}")
    try:
        return float(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where} has no numeric <bndbox><{tag}> (got {text!r})") from None
