"""Datasets of the same images joined by image: one sample carries every dataset's annotations.

The synthetic shapes set is written in three layouts with the same pixels and
file stems (:mod:`mtvision.synthetic.shapes`): ImageNet class folders (the
label), a COCO json (boxes) and VOC masks. Joined by file stem, one sample
holds the image with ``label``, ``boxes`` + ``labels`` and ``mask`` together,
as a multi-task model trains on::

    dataset = dict(
        type="JoinedDataset",
        datasets=dict(
            detection=dict(type="CocoDetection", data_root="data/demo/coco/", ...),
            classification=dict(type="ImageNetFolder", data_root="data/demo/imagenet", ...),
            segmentation=dict(type="VOCSegmentation", data_root="data/demo/VOCdevkit/VOC2012", ...),
        ),
        pipeline=[dict(type="LoadImage"), dict(type="LoadMask"), dict(type="Albumentations", ...),
                  dict(type="PackInputs")],
    )

Each part is an ordinary dataset adapter that reads its own layout; the join
only merges their ``data_list`` entries. Part names are the names of the heads
the annotations feed; ``metainfo`` is ``{"tasks": {part name: that part's
metainfo}}`` (see :mod:`mtvision.utils.metainfo`), so each metric and picture
gets its own task's class list.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from mmengine.logging import print_log

from mtvision.data.base_dataset import BaseDataset
from mtvision.data.image_io import read_image_size
from mtvision.errors import AnnotationError, ConfigError
from mtvision.registry import DATASETS
from mtvision.utils.metainfo import TASKS_KEY

__all__ = ["JoinedDataset", "check_joined_image_sizes", "file_stem"]

_MAX_LISTED = 5
# Keys of a part's data info that the join handles itself instead of merging.
_JOIN_KEYS = ("img_path", "sample_idx", "meta")
# Keys that only name where a part's annotation came from (for messages): the
# first part's is kept when several give one.
_SOURCE_KEYS = ("ann_path",)


def file_stem(data_info: Mapping) -> str:
    """The default join key: the image file name without folder and extension."""
    return os.path.splitext(os.path.basename(data_info["img_path"]))[0]


def check_joined_image_sizes(results: dict) -> dict:
    """Pipeline step run before the others: every part's copy of the image has one size.

    Reads ``results["part_img_paths"]`` (part name -> image file) and compares
    the sizes in the file headers (upright, as :func:`~mtvision.data.image_io.read_image_size`
    gives them), so that boxes from one layout and a mask from another cannot be
    silently misplaced on an image of a third.

    Raises:
        AnnotationError: the sizes differ; the message names every file and its size.
        ImageLoadError: a part's image file is missing or unreadable.
    """
    paths = results.get("part_img_paths", {})
    sizes = {name: read_image_size(path) for name, path in paths.items()}
    if len(set(sizes.values())) > 1:
        listed = "; ".join(
            f"{name}: {paths[name]} is {width}x{height}" for name, (width, height) in sizes.items()
        )
        raise AnnotationError(
            f"JoinedDataset: the joined copies of one image differ in size (WxH): {listed}"
        )
    return results


@DATASETS.register_module()
class JoinedDataset(BaseDataset):
    """Several datasets of the same images, joined by image into one sample each.

    ``load_data_list`` builds every part and merges, for each join key (by
    default the file stem), the parts' data infos into one::

        {"img_path": the first part's image file,
         "part_img_paths": {part name: that part's image file},
         <every other key of every part>: e.g. "label" (ImageNetFolder),
             "boxes"/"labels"/"width"/"height" (CocoDetection), "seg_path"/"num_classes"
             (VOCSegmentation); a key several parts give must have one value
             (``ann_path``, naming the annotation file in messages, keeps the first),
         "meta": the parts' meta merged; a key several parts give (e.g. both COCO
             and VOC give "img_id") keeps the value of the first of them in
             ``datasets`` order, so list the part whose ids a metric reads first
             (CocoMetric reads the COCO "img_id")}

    Samples follow the first part's order. The pipeline (``LoadImage``,
    ``LoadMask``, ``Albumentations``, ``PackInputs``) runs on the merged info,
    so geometric augmentations move image, boxes and mask together.

    Args:
        datasets: part name (the head its annotations feed) -> dataset config
            or built dataset. Parts give no ``pipeline`` of their own (only the
            joined one runs); ``test_mode`` defaults to the joined dataset's.
        key: ``"stem"`` (:func:`file_stem`) or a function of a part's data
            info returning the join key.
        on_unmatched: ``"raise"`` (default) when an image is not in every
            part, naming it, the parts that have it (with the file) and the
            parts that lack it; ``"skip"`` keeps only images in every part and
            logs how many were left out.
        check_sizes: before each sample's pipeline, compare the sizes of the
            parts' image files (:func:`check_joined_image_sizes`; header reads
            only). Skip it only when the parts share one image folder.
        on_bad_image, pipeline, test_mode: see :class:`BaseDataset`.
        indices, serialize_data, lazy_init, max_refetch: mmengine's
            ``BaseDataset`` arguments (``indices=N`` keeps the first N samples).

    Raises:
        ConfigError: no parts, or a part with its own pipeline.
        AnnotationError: an unmatched image (``on_unmatched="raise"``), a key
            shared by two images of one part, or two parts giving one
            annotation key different values (e.g. two ``label``).
    """

    def __init__(
        self,
        datasets: Mapping[str, dict | Any],
        key: Literal["stem"] | Callable[[dict], Hashable] = "stem",
        on_unmatched: Literal["raise", "skip"] = "raise",
        check_sizes: bool = True,
        on_bad_image: Literal["raise", "skip"] = "raise",
        pipeline: Sequence = (),
        test_mode: bool = False,
        indices: int | Sequence[int] | None = None,
        serialize_data: bool = True,
        lazy_init: bool = False,
        max_refetch: int = 1000,
    ) -> None:
        if not isinstance(datasets, Mapping) or not datasets:
            raise ConfigError(
                "JoinedDataset: datasets must map part names (the heads they feed) to dataset "
                f"configs, got {datasets!r}"
            )
        if on_unmatched not in ("raise", "skip"):
            raise ValueError(f"on_unmatched must be 'raise' or 'skip', got {on_unmatched!r}")
        if key == "stem":
            key = file_stem
        elif not callable(key):
            raise ValueError(f"key must be 'stem' or a function of a data info, got {key!r}")
        self.part_configs = dict(datasets)
        self.key = key
        self.on_unmatched = on_unmatched
        self.part_sources: dict[str, str] = {}
        steps = [check_joined_image_sizes] if check_sizes else []
        super().__init__(
            on_bad_image=on_bad_image,
            pipeline=[*steps, *pipeline],
            test_mode=test_mode,
            indices=indices,
            serialize_data=serialize_data,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )

    def load_data_list(self) -> list[dict]:
        # The parts are dropped once joined: only their metainfo and data infos are kept.
        parts = {name: self._build_part(name, cfg) for name, cfg in self.part_configs.items()}
        self.part_sources = {name: _source(part) for name, part in parts.items()}
        self._metainfo[TASKS_KEY] = {name: part.metainfo for name, part in parts.items()}
        infos = {name: self._infos_by_key(name, part) for name, part in parts.items()}

        keys: dict[Hashable, None] = {}  # ordered union, the first part's order first
        for by_key in infos.values():
            keys.update(dict.fromkeys(by_key))
        unmatched = [k for k in keys if any(k not in by_key for by_key in infos.values())]
        if unmatched:
            self._report_unmatched(unmatched, infos)
        unmatched_set = set(unmatched)
        return [
            self._merge(key, {name: by_key[key] for name, by_key in infos.items()})
            for key in keys
            if key not in unmatched_set
        ]

    def _build_part(self, name: str, cfg: dict | Any) -> Any:
        if isinstance(cfg, Mapping):
            cfg = dict(cfg)
            if cfg.get("pipeline"):
                raise ConfigError(
                    f"JoinedDataset: part {name!r} has its own pipeline, which would not run: "
                    "joined samples go through the JoinedDataset's pipeline, give it there"
                )
            cfg.setdefault("test_mode", self.test_mode)
            part = DATASETS.build(cfg)
        else:
            part = cfg
        if hasattr(part, "full_init"):
            part.full_init()
        if len(part) == 0:
            raise AnnotationError(f"JoinedDataset: part {name!r} ({_source(part)}) has no image")
        return part

    def _infos_by_key(self, name: str, part: Any) -> dict[Hashable, dict]:
        by_key: dict[Hashable, dict] = {}
        for index in range(len(part)):
            info = part.get_data_info(index)
            key = self.key(info)
            if key in by_key:
                raise AnnotationError(
                    f"JoinedDataset: part {name!r} has two images with the join key {key!r}: "
                    f"{by_key[key]['img_path']} and {info['img_path']}"
                )
            by_key[key] = info
        return by_key

    def _report_unmatched(self, unmatched: list, infos: dict[str, dict]) -> None:
        lines = []
        for key in unmatched[:_MAX_LISTED]:
            have = [
                f"{name} ({by_key[key]['img_path']})"
                for name, by_key in infos.items()
                if key in by_key
            ]
            lack = [
                f"{name} ({self.part_sources[name]})"
                for name, by_key in infos.items()
                if key not in by_key
            ]
            lines.append(f"{key!r} is in {', '.join(have)} but not in {', '.join(lack)}")
        more = len(unmatched) - _MAX_LISTED
        problem = (
            f"{len(unmatched)} images are not in every part: "
            + "; ".join(lines)
            + (f"; and {more} more" if more > 0 else "")
        )
        if self.on_unmatched == "raise":
            raise AnnotationError(
                f"JoinedDataset: {problem} (on_unmatched='skip' keeps only the images all parts have)"
            )
        print_log(f"JoinedDataset: left out {problem}", logger="current", level=logging.WARNING)

    def _merge(self, key: Hashable, infos: dict[str, dict]) -> dict:
        first = next(iter(infos.values()))
        joined: dict[str, Any] = {
            "img_path": first["img_path"],
            "part_img_paths": {name: info["img_path"] for name, info in infos.items()},
        }
        meta: dict[str, Any] = {}
        given_by: dict[str, str] = {}
        for name, info in infos.items():
            for field, value in info.items():
                if field in _JOIN_KEYS:
                    continue
                if field in given_by:
                    if field in _SOURCE_KEYS or _same(joined[field], value):
                        continue
                    raise AnnotationError(
                        f"JoinedDataset: parts {given_by[field]!r} and {name!r} both give "
                        f"{field!r} for image {key!r} ({infos[given_by[field]]['img_path']}, "
                        f"{info['img_path']}); a joined sample holds one of each annotation"
                    )
                given_by[field] = name
                joined[field] = value
            for field, value in info.get("meta", {}).items():
                meta.setdefault(field, value)
        joined["meta"] = meta
        return joined


def _same(a: Any, b: Any) -> bool:
    """Whether two parts give one value (e.g. the same stated ``width``)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _source(part: Any) -> str:
    """What a part reads, for messages: its annotation file, split folder or data root."""
    where = (
        getattr(part, "ann_file", "")
        or getattr(part, "split_dir", "")
        or getattr(part, "data_root", "")
        or "?"
    )
    return f"{type(part).__name__} {where}"
