"""Read, check and normalise COCO instances ground truth, once, for every user of it.

:class:`~mtvision.data.coco_detection.CocoDetection` (training targets) and
:class:`~mtvision.evaluation.coco_metric.CocoMetric` (both COCOeval backends,
faster-coco-eval and pycocotools) read an instances file through
:func:`load_coco_instances`, and nothing hands a user's raw json to a library:
a backend only ever sees the normalised dict (and the evaluation re-numbers its
ids, see :mod:`mtvision.evaluation.coco_metric`).

What normalisation fixes, so that every consumer agrees:

- ``iscrowd`` missing means 0 (pycocotools raised ``KeyError`` while
  faster-coco-eval read 0); ``true``/``false`` become 1/0.
- ``area`` missing is computed as COCO defines it: the area of the
  ``segmentation`` mask (polygons or RLE, through pycocotools' ``maskUtils``),
  or ``w * h`` of the box when there is no segmentation. COCOeval's
  small/medium/large split reads it.
- image ``width``/``height`` may be absent (``None`` here): the decoded image
  is the truth about size anyway (see :class:`~mtvision.data.transforms.LoadImage`).
- category ``name`` may be absent (``None``); datasets that select classes by
  name need it.
- an annotation that repeats an earlier one exactly (same image, category,
  ``bbox`` and ``iscrowd``; another id), as annotation tools' exports
  sometimes write, is dropped, and one warning names the file, the count and
  the ids (copy and original): kept, the copy would be one more object that no
  detection can match (perfect detections scoring mAP 0.66 instead of 1.0)
  and a second training target.
- only the keys above survive: extra keys (``ignore``, ``segmentation``,
  ``info``, ``licenses``, ``coco_url``, ...) are dropped, so no backend reads a
  flag the other one ignores.

What is an error (:class:`~mtvision.errors.AnnotationError`, naming the file
and the entry): not a JSON object; a missing ``images``/``annotations``/
``categories`` list; an entry without an integer ``id`` (any JSON integer,
also beyond 2**53), or a repeated one; an annotation without ``image_id``,
``category_id`` or ``bbox``, or naming an unknown image or category; a
``bbox`` that is not four finite numbers with ``w, h >= 0``; a negative or
non-numeric ``area``; ``iscrowd`` other than 0/1; a ``width``/``height`` that
is present but not a positive number; a ``segmentation`` that cannot give an
area when one must be computed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from mmengine.logging import print_log

from mtvision.errors import AnnotationError

__all__ = ["load_coco_instances", "normalize_coco_instances", "read_json"]

_SECTIONS = ("images", "annotations", "categories")
_MAX_LISTED_COPIES = 10  # duplicate annotations named one by one in the warning


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse the JSON file at ``path``; ``what`` names it in errors.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: empty or not valid JSON (UTF-8), naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        empty = " (the file is empty)" if os.path.getsize(path) == 0 else ""
        raise AnnotationError(f"{path}: {what} is not valid JSON{empty} ({error})") from error


def load_coco_instances(path: str | os.PathLike) -> dict:
    """Read a COCO instances file and return it normalised (see the module docstring).

    Returns:
        ``{"images": [{"id", "file_name", "width", "height"}],
        "categories": [{"id", "name"}],
        "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h]
        (float pixels), "area": float, "iscrowd": 0 | 1}]}``, entries in file
        order; ``file_name``, ``width``, ``height`` and ``name`` may be ``None``.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: anything else, naming the file (and the entry).
    """
    path = os.fspath(path)
    return normalize_coco_instances(read_json(path, "COCO annotation file"), path)


def normalize_coco_instances(data: Any, source: str) -> dict:
    """Check a COCO instances dict and return a normalised copy (``data`` is not changed).

    Idempotent: a normalised dict comes back equal. ``source`` names the data
    (its file) in error messages.
    """
    if not isinstance(data, Mapping):
        raise AnnotationError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for key in _SECTIONS:
        if not isinstance(data.get(key), list):
            problem = "missing" if key not in data else "not a list"
            raise AnnotationError(
                f"{source}: top-level key '{key}' is {problem} (a COCO instances file has "
                "'images', 'annotations' and 'categories' lists)"
            )
    images = [_image(entry, source) for entry in _with_unique_ids(data["images"], "image", source)]
    categories = [
        _category(entry, source)
        for entry in _with_unique_ids(data["categories"], "category", source)
    ]
    image_by_id = {image["id"]: image for image in images}
    category_ids = {category["id"] for category in categories}
    annotations = [
        _annotation(entry, image_by_id, category_ids, source)
        for entry in _with_unique_ids(data["annotations"], "annotation", source)
    ]
    annotations = _without_exact_copies(annotations, source)
    return {"images": images, "annotations": annotations, "categories": categories}


def _without_exact_copies(annotations: list[dict], source: str) -> list[dict]:
    """``annotations`` without those repeating an earlier one (image, category, box,
    crowd flag); one warning names the copies dropped."""
    first_of: dict[tuple, int] = {}
    kept, copies = [], []
    for ann in annotations:
        key = (ann["image_id"], ann["category_id"], tuple(ann["bbox"]), ann["iscrowd"])
        if key in first_of:
            copies.append(f"{ann['id']} (copy of {first_of[key]})")
            continue
        first_of[key] = ann["id"]
        kept.append(ann)
    if copies:
        listed = ", ".join(copies[:_MAX_LISTED_COPIES])
        more = (
            f" and {len(copies) - _MAX_LISTED_COPIES} more"
            if len(copies) > _MAX_LISTED_COPIES
            else ""
        )
        print_log(
            f"{source}: dropped {len(copies)} duplicate annotation"
            f"{'s' if len(copies) > 1 else ''} (an exact copy of an earlier one: same image, "
            f"category and bbox, another id): id{'s' if len(copies) > 1 else ''} {listed}{more}",
            logger="current",
            level=logging.WARNING,
        )
    return kept


def _with_unique_ids(entries: list, what: str, source: str) -> list[Mapping]:
    seen: set[int] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not _is_int(entry.get("id")):
            raise AnnotationError(f"{source}: {what} #{index} has no integer 'id': {entry!r:.200}")
        if entry["id"] in seen:
            raise AnnotationError(f"{source}: {what} id {entry['id']} appears more than once")
        seen.add(entry["id"])
    return entries


def _image(entry: Mapping, source: str) -> dict:
    where = f"{source}: image {entry['id']}"
    file_name = entry.get("file_name")
    if file_name is not None and not (isinstance(file_name, str) and file_name):
        raise AnnotationError(f"{where} has file_name {file_name!r}; expected a non-empty string")
    size = {}
    for key in ("width", "height"):
        value = entry.get(key)
        if value is not None and not (_is_number(value) and value > 0):
            raise AnnotationError(
                f"{where} ({file_name!r}) has {key} {value!r}; expected a positive number "
                "(or no key: the decoded image gives the size)"
            )
        size[key] = value
    return {"id": entry["id"], "file_name": file_name, **size}


def _category(entry: Mapping, source: str) -> dict:
    name = entry.get("name")
    if name is not None and not isinstance(name, str):
        raise AnnotationError(
            f"{source}: category {entry['id']} has name {name!r}; expected a string"
        )
    return {"id": entry["id"], "name": name}


def _annotation(
    entry: Mapping, image_by_id: dict[int, dict], category_ids: set[int], source: str
) -> dict:
    where = f"{source}: annotation {entry['id']}"
    for key in ("image_id", "category_id", "bbox"):
        if key not in entry:
            raise AnnotationError(f"{where} has no '{key}'")
    image = image_by_id.get(entry["image_id"]) if _is_int(entry["image_id"]) else None
    if image is None:
        raise AnnotationError(f"{where} refers to image_id {entry['image_id']!r}, not in 'images'")
    if not _is_int(entry["category_id"]) or entry["category_id"] not in category_ids:
        raise AnnotationError(
            f"{where} has category_id {entry['category_id']!r}, not in 'categories' "
            f"(ids {sorted(category_ids)[:20]})"
        )
    bbox = entry["bbox"]
    if not (
        isinstance(bbox, list | tuple)
        and len(bbox) == 4
        and all(_is_number(v) for v in bbox)
        and bbox[2] >= 0
        and bbox[3] >= 0
    ):
        raise AnnotationError(
            f"{where} has bbox {bbox!r}; expected [x, y, width, height]: four finite numbers, "
            "width and height >= 0"
        )
    iscrowd = entry.get("iscrowd", 0)
    if isinstance(iscrowd, str) or iscrowd not in (0, 1):
        raise AnnotationError(f"{where} has iscrowd {iscrowd!r}; expected 0 or 1")
    area = entry.get("area")
    if area is None:
        area = _computed_area(entry, image, where)
    elif not (_is_number(area) and area >= 0):
        raise AnnotationError(f"{where} has area {area!r}; expected a number >= 0")
    return {
        "id": entry["id"],
        "image_id": entry["image_id"],
        "category_id": entry["category_id"],
        "bbox": [float(v) for v in bbox],
        "area": float(area),
        "iscrowd": int(iscrowd),
    }


def _computed_area(entry: Mapping, image: dict, where: str) -> float:
    """COCO's ``area``: the segmentation mask's pixel count, else the box's ``w * h``."""
    segmentation = entry.get("segmentation")
    if not segmentation:
        return float(entry["bbox"][2]) * float(entry["bbox"][3])
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]
            height, width = _canvas(segmentation, image)
            rles = mask_utils.frPyObjects(segmentation, height, width)
            return float(mask_utils.area(mask_utils.merge(rles)))
        if isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), list):
            height, width = segmentation["size"]  # uncompressed RLE
            return float(mask_utils.area(mask_utils.frPyObjects(dict(segmentation), height, width)))
        if isinstance(segmentation, Mapping):  # compressed RLE
            rle = dict(segmentation)
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
            return float(mask_utils.area(rle))
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as error:
        raise AnnotationError(
            f"{where} has no 'area' and its segmentation cannot give one "
            f"({type(error).__name__}: {error})"
        ) from error
    raise AnnotationError(
        f"{where} has no 'area' and its segmentation is a {type(segmentation).__name__}; "
        "expected polygons (a list) or RLE (a dict with 'counts' and 'size')"
    )


def _canvas(polygons: list, image: dict) -> tuple[int, int]:
    """(height, width) to rasterise polygons on: the image's, else just enough for them."""
    if image["width"] is not None and image["height"] is not None:
        return math.ceil(image["height"]), math.ceil(image["width"])
    xs = [v for polygon in polygons for v in polygon[0::2]]
    ys = [v for polygon in polygons for v in polygon[1::2]]
    return math.ceil(max(ys, default=0)) + 1, math.ceil(max(xs, default=0)) + 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
