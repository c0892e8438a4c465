"""Pipeline transforms on the sample dict, registered in ``TRANSFORMS``.

A pipeline is ``LoadImage -> Albumentations -> PackInputs``::

    pipeline = [
        dict(type="LoadImage"),
        dict(type="Albumentations", transforms=[
            dict(type="RandomResizedCrop", size=(224, 224)),
            dict(type="HorizontalFlip", p=0.5),
        ]),
        dict(type="PackInputs"),
    ]

Sample dict keys (before ``PackInputs``):

- ``image``: np.ndarray (H, W, 3) uint8 RGB
- ``label``: int (classification)
- ``boxes``: np.ndarray (N, 4) float32, xyxy in pixels, with ``labels``:
  np.ndarray (N,) int64, contiguous 0..C-1 (detection)
- ``mask``: np.ndarray (H, W) uint8, 255 = ignore (segmentation)
- ``meta``: dict with ``img_path``, ``ori_shape`` (H, W) as loaded,
  ``img_shape`` (H, W) after augmentation, ``sample_idx`` and any
  dataset-specific ids.

The pipeline stays uint8: mean/std normalisation, batching and padding happen
in the model's data preprocessor (mmengine ``ImgDataPreprocessor``, with
``bgr_to_rgb=False`` since images are already RGB).
"""

from __future__ import annotations

import difflib
import os
import random
import warnings
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from mtvision.data import ssd_transforms
from mtvision.data.image_io import exif_orientation, load_image
from mtvision.errors import AnnotationError
from mtvision.registry import TRANSFORMS
from mtvision.utils.boxes import clip_boxes, first_invalid_box

__all__ = ["Albumentations", "LoadImage", "PackInputs"]


@TRANSFORMS.register_module()
class LoadImage:
    """Read ``img_path`` into ``image`` (H, W, 3) uint8 RGB, check the annotation against
    it, and start ``meta``.

    The decoded image (EXIF orientation applied, see
    :mod:`~mtvision.data.image_io`) is the truth about size:

    - when the sample states a size (``width`` and ``height``, as COCO image
      entries and VOC ``<size>`` do), a different decoded size raises
      :class:`~mtvision.errors.AnnotationError` naming the annotation file
      (``ann_path``), the image file and both sizes;
    - ``boxes`` (xyxy pixels) are clipped to the decoded image; a box with
      nothing left inside it raises the same error, naming the box. So no box
      outside the image reaches the augmentations.

    ``meta`` gets ``img_path``, ``ori_shape`` (H, W), ``img_shape`` (H, W)
    (the same until a transform resizes) and, when present, ``sample_idx``;
    every other key (``label``, ``boxes``, ...) is kept. Unreadable files
    raise :class:`~mtvision.data.image_io.ImageLoadError`.
    """

    #: It reads the sample's files: an inference pipeline, whose images are given,
    #: leaves it out (:func:`mtvision.engine.model_source.inference_pipeline`).
    reads_files = True

    def __call__(self, results: dict) -> dict:
        image = load_image(results["img_path"])
        height, width = image.shape[:2]
        _check_stated_size(results, width, height)
        meta = dict(results.get("meta", {}))
        meta["img_path"] = results["img_path"]
        meta["ori_shape"] = (height, width)
        # Until a transform resizes the image, its shape is the loaded one.
        meta["img_shape"] = meta["ori_shape"]
        if "sample_idx" in results:
            meta["sample_idx"] = results["sample_idx"]
        results = {**results, "image": image, "meta": meta}
        if "boxes" in results:
            results["boxes"] = _clipped_to_image(results, width, height)
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _annotation_source(results: dict) -> str:
    return str(results.get("ann_path") or "the annotation")


def _check_stated_size(results: dict, width: int, height: int) -> None:
    """Raise AnnotationError if the sample's stated ``width``/``height`` differ from the decoded."""
    stated_width, stated_height = results.get("width"), results.get("height")
    if stated_width is None or stated_height is None:
        return
    if (float(stated_width), float(stated_height)) == (float(width), float(height)):
        return
    path = results["img_path"]
    hint = ""
    orientation = exif_orientation(path)
    if orientation != 1 and (float(stated_width), float(stated_height)) == (height, width):
        hint = (
            f"; the file's EXIF orientation {orientation} turns its stored {height}x{width} "
            "pixels upright, and mtvision applies it (as PIL's ImageOps.exif_transpose, mmcv "
            "and detectron2 do): the annotation describes the stored pixels, so remove the "
            "file's EXIF orientation or annotate the upright picture"
        )
    raise AnnotationError(
        f"{_annotation_source(results)}: says image '{path}' is {stated_width:g}x{stated_height:g} "
        f"(width x height), but the file decodes to {width}x{height}{hint}"
    )


def _clipped_to_image(results: dict, width: int, height: int) -> np.ndarray:
    """``boxes`` clipped to [0, width] x [0, height]; AnnotationError for one left empty."""
    boxes = np.asarray(results["boxes"], np.float32).reshape(-1, 4)
    clipped = clip_boxes(boxes, (width, height))
    index = first_invalid_box(clipped)
    if index is not None:
        raise AnnotationError(
            f"{_annotation_source(results)}: box {index} {boxes[index].tolist()} (xyxy pixels) "
            f"of image '{results['img_path']}' lies outside the decoded {width}x{height} image"
        )
    return clipped


@TRANSFORMS.register_module()
class Albumentations:
    """Apply an ``albumentations.Compose`` to ``image`` and, when present, ``mask`` and ``boxes``.

    Args:
        transforms: albumentations transforms, each a built transform object or
            a config ``dict(type="ClassName", **kwargs)`` naming a class of the
            ``albumentations`` module or one of mtvision's albumentations
            transforms (``ZoomOut``, ``MinIoURandomCrop`` in
            :mod:`mtvision.data.ssd_transforms`). Compositions (``OneOf``,
            ``SomeOf``, ``Sequential``) take their ``transforms`` list in the
            same form.
        bbox_params: overrides for ``albumentations.BboxParams``; the defaults
            are ``format="pascal_voc"`` (xyxy pixels, the sample contract) and
            ``label_fields=["labels"]``, so boxes dropped by a crop take their
            labels with them.

    Masks are resampled with nearest-neighbour interpolation (albumentations'
    default for masks); padding fills masks with each transform's
    ``fill_mask``, so segmentation configs set ``fill_mask=255`` (ignore).
    Writes ``meta["img_shape"]`` = (H, W) of the augmented image.
    """

    #: For the config check (:mod:`mtvision.engine.config_keys`): ``transforms``
    #: entries name albumentations classes, not registered types.
    nested_config_types = {"transforms": lambda name: find_transform_class(name)}

    def __init__(self, transforms: Sequence[dict | Any], bbox_params: dict | None = None):
        self.transforms = [_build_albumentation(t) for t in transforms]
        self.bbox_params = {
            "format": "pascal_voc",
            "label_fields": ["labels"],
            **(bbox_params or {}),
        }
        self.compose = A.Compose(self.transforms, bbox_params=A.BboxParams(**self.bbox_params))
        self._seeded_in_pid: int | None = None

    def __call__(self, results: dict) -> dict:
        self._seed_once_per_process()
        has_boxes = "boxes" in results
        # A Compose with bbox_params demands boxes and labels on every call;
        # samples without boxes pass empty ones that are not written back.
        boxes = results["boxes"] if has_boxes else np.zeros((0, 4), np.float32)
        labels = results["labels"] if has_boxes else np.zeros((0,), np.int64)
        targets = {
            "image": results["image"],
            "bboxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, np.int64).reshape(-1),
        }
        _check_boxes_inside(targets["bboxes"], results)
        if "mask" in results:
            targets["mask"] = results["mask"]

        try:
            out = self.compose(**targets)
        except (ValueError, TypeError, cv2.error) as err:
            # albumentations' and OpenCV's own messages do not say which sample
            # they come from.
            source = results.get("img_path") or results.get("meta", {}).get("img_path", "<unknown>")
            raise ValueError(f"{source}: albumentations failed on this sample: {err}") from err

        results = {**results, "image": out["image"]}
        if "mask" in out:
            results["mask"] = out["mask"]
        if has_boxes:
            results["boxes"] = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            results["labels"] = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        results["meta"] = {**results.get("meta", {}), "img_shape": tuple(out["image"].shape[:2])}
        return results

    def _seed_once_per_process(self) -> None:
        # Compose draws from its own generator, made when it is built.
        # DataLoader workers are copies of that state, so without reseeding
        # every worker replays the same augmentations and mmengine's seed never
        # reaches them. torch.initial_seed() differs per worker and follows the
        # seed mmengine sets. One generator is shared by all transforms: a
        # seed per transform would make their random draws identical.
        pid = os.getpid()
        if self._seeded_in_pid != pid:
            seed = torch.initial_seed()
            self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
            self._seeded_in_pid = pid

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(transforms={self.transforms}, bbox_params={self.bbox_params})"
        )


def _check_boxes_inside(boxes: np.ndarray, results: dict) -> None:
    """Refuse boxes that leave the image, naming the sample, before albumentations sees them."""
    height, width = results["image"].shape[:2]
    index = first_invalid_box(boxes, (width, height))
    if index is not None:
        source = results.get("img_path") or results.get("meta", {}).get("img_path", "<unknown>")
        raise AnnotationError(
            f"{source}: box {index} {boxes[index].tolist()} (xyxy pixels) is empty or leaves "
            f"the {width}x{height} image; boxes reach the augmentations clipped to the decoded "
            "image (LoadImage does it, and checks the annotation's size)"
        )


# Where transform names are looked up, in order: albumentations, then mtvision's
# albumentations-compatible transforms.
_TRANSFORM_NAMESPACES = (A, ssd_transforms)


def _transform_classes(namespace: Any) -> dict[str, type]:
    """Transform classes a module offers by name (its ``__all__`` when it declares one)."""
    names = getattr(namespace, "__all__", None) or list(vars(namespace))
    kinds = (A.BasicTransform, A.BaseCompose)
    return {
        name: obj
        for name in names
        if isinstance(obj := getattr(namespace, name, None), type) and issubclass(obj, kinds)
    }


def find_transform_class(name: str) -> type | None:
    """The albumentations (or mtvision albumentations-compatible) transform class ``name``."""
    for namespace in _TRANSFORM_NAMESPACES:
        found = _transform_classes(namespace).get(name)
        if found is not None:
            return found
    return None


def _build_albumentation(cfg: dict | Any) -> Any:
    """Build one albumentations transform from ``dict(type=..., **kwargs)``; pass objects through."""
    if not isinstance(cfg, dict):
        if not isinstance(cfg, (A.BasicTransform, A.BaseCompose)):
            raise TypeError(
                f"Albumentations: expected an albumentations transform or a config dict, got {cfg!r}"
            )
        return cfg
    kwargs = dict(cfg)
    name = kwargs.pop("type", None)
    if not isinstance(name, str):
        raise ValueError(f"Albumentations: transform config {cfg!r} needs type='ClassName'")
    classes = {ns.__name__: _transform_classes(ns) for ns in _TRANSFORM_NAMESPACES}
    found = [(module, names[name]) for module, names in classes.items() if name in names]
    if not found:
        known = [known_name for names in classes.values() for known_name in names]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Albumentations: unknown albumentations transform type {name!r}{hint}")
    module, cls = found[0]
    name = f"{module}.{name}"
    if "transforms" in kwargs:
        kwargs["transforms"] = [_build_albumentation(t) for t in kwargs["transforms"]]
    try:
        with warnings.catch_warnings():
            # albumentations only warns about unknown arguments; they are an error below.
            warnings.filterwarnings("ignore", message=r"Argument\(s\) .* are not valid")
            transform = cls(**kwargs)
    except (TypeError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"Albumentations: cannot build {name}({kwargs}): {err}") from err
    if getattr(transform, "invalid_args", None):
        raise ValueError(
            f"Albumentations: {name} got unknown argument(s) "
            f"{', '.join(map(repr, transform.invalid_args))}"
        )
    return transform


@TRANSFORMS.register_module()
class PackInputs:
    """Pack a sample into the model's input format.

    Output::

        {"inputs": torch.uint8 tensor (3, H, W), contiguous, RGB,
         "data_samples": {
             "label": int                               (if the sample has one),
             "boxes": torch.float32 (N, 4) xyxy pixels  (if the sample has boxes),
             "labels": torch.int64 (N,)                 (with boxes),
             "mask": torch.uint8 (H, W), 255 = ignore   (if the sample has one),
             "meta": dict                               (``meta_keys`` of the sample's meta),
         }}

    Args:
        meta_keys: which ``meta`` entries to keep; ``None`` keeps all. Keys a
            sample does not have are left out.
    """

    def __init__(self, meta_keys: Sequence[str] | None = None):
        self.meta_keys = None if meta_keys is None else tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        image = results["image"]
        if not (
            isinstance(image, np.ndarray)
            and image.dtype == np.uint8
            and image.ndim == 3
            and image.shape[2] == 3
        ):
            raise TypeError(
                "PackInputs expects image as an (H, W, 3) uint8 RGB array, got "
                f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}; "
                "normalisation belongs in the model's data preprocessor, not the pipeline"
            )
        inputs = torch.from_numpy(image).permute(2, 0, 1).contiguous()

        meta = results.get("meta", {})
        if self.meta_keys is not None:
            meta = {key: meta[key] for key in self.meta_keys if key in meta}
        data_sample: dict[str, Any] = {"meta": dict(meta)}
        if "label" in results:
            data_sample["label"] = int(results["label"])
        if "boxes" in results:
            data_sample["boxes"] = torch.as_tensor(
                np.asarray(results["boxes"], np.float32)
            ).reshape(-1, 4)
            data_sample["labels"] = torch.as_tensor(
                np.asarray(results["labels"], np.int64)
            ).reshape(-1)
        if "mask" in results:
            data_sample["mask"] = torch.from_numpy(
                np.ascontiguousarray(results["mask"], dtype=np.uint8)
            )
        return {"inputs": inputs, "data_samples": data_sample}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(meta_keys={self.meta_keys})"
