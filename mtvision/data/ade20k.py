"""ADE20K SceneParsing (MIT Scene Parsing Benchmark, ADEChallengeData2016): 150 classes.

Layout (``data_root`` is the ``ADEChallengeData2016`` folder)::

    ADEChallengeData2016/
      images/training/ADE_train_<n>.jpg         images/validation/ADE_val_<n>.jpg
      annotations/training/ADE_train_<n>.png    annotations/validation/ADE_val_<n>.png

An annotation is a grayscale index PNG of its image's size: 0 = "other" (no class),
1..150 the classes of :data:`ADE20K_CLASSES` (objectInfo150.csv's order, most frequent
first). As mmseg's ``reduce_zero_label`` (and TF-DeepLab's ADE20K setup, which ignores
label 0 as well), 0 is ignored and 1..150 become labels 0..149 on load (each sample's
``label_map``, applied by :class:`~mtvision.data.mask_io.LoadMask`); 255, which the
files do not use, stays ignored. Any other value (151..254) is an error naming the PNG,
and so is an annotation of another size than its image (both raised by ``LoadMask``
as :class:`~mtvision.data.mask_io.MaskLoadError`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

from mtvision.data.base_dataset import BaseDataset
from mtvision.data.label_space import check_same_classes
from mtvision.errors import AnnotationError
from mtvision.registry import DATASETS
from mtvision.utils.palette import voc_colormap

__all__ = ["ADE20K_CLASSES", "ADE20KSegmentation"]

ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea",
    "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe",
    "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel",
    "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
"""The 150 ADE20K SceneParsing classes (mmseg's names); label i is annotation value i + 1."""

#: The annotation files' values: 0 ("other") and 1..150.
FILE_VALUES = len(ADE20K_CLASSES) + 1
_SPLITS = ("training", "validation")
_MAX_LISTED_MISSING = 5


@DATASETS.register_module()
class ADE20KSegmentation(BaseDataset):
    """Every image of ``images/<split>`` with its annotation ``annotations/<split>/<stem>.png``,
    sorted by file name.

    ``load_data_list`` gives per image ``{"img_path", "seg_path", "num_classes": 151,
    "label_map": {0: 255, 1: 0, ..., 150: 149}, "meta": {"img_id": "<stem>"}}``; a
    pipeline reads it with ``LoadImage`` and ``LoadMask``. ``metainfo``: ``classes``
    (:data:`ADE20K_CLASSES`, label = index) and ``palette``.

    Args:
        data_root: the ``ADEChallengeData2016`` folder.
        split: ``"training"`` (20,210 images) or ``"validation"`` (2,000).
        img_suffix: image file ending (``.jpg``).
        top_classes: ``None`` (the 150 classes) or N: the N most frequent classes keep
            their labels 1..N, every other class becomes label 0 ``"background"``
            (``classes`` = ``("background", *ADE20K_CLASSES[:N])``), 0 ("other") stays
            ignored: MLPerf Mobile's "ADE20K-Top31" with N = 31, the 32 outputs of
            Google's MLPerf DeepLabv3+ file.
        model_classes: the classes of the model this split is scored against: must
            be :data:`ADE20K_CLASSES` (else an AnnotationError names both lists).
        on_bad_image, pipeline, test_mode, indices, serialize_data, lazy_init,
            max_refetch: see :class:`BaseDataset`.

    Raises:
        FileNotFoundError: no such folder, or images without an annotation (the first
            few listed).
        AnnotationError: an unknown split, or a split folder without images.
    """

    METAINFO = {
        "classes": ADE20K_CLASSES,
        "palette": [tuple(int(c) for c in rgb) for rgb in voc_colormap(len(ADE20K_CLASSES))],
    }

    def __init__(
        self,
        data_root: str | os.PathLike,
        split: str = "training",
        img_suffix: str = ".jpg",
        top_classes: int | None = None,
        model_classes: Sequence[str] | None = None,
        on_bad_image: Literal["raise", "skip"] = "raise",
        pipeline: Sequence = (),
        test_mode: bool = False,
        indices: int | Sequence[int] | None = None,
        serialize_data: bool = True,
        lazy_init: bool = False,
        max_refetch: int = 1000,
    ) -> None:
        if split not in _SPLITS:
            raise AnnotationError(
                f"ADE20KSegmentation: split must be one of {_SPLITS}, got {split!r}"
            )
        data_root = os.fspath(data_root)
        self.split = split
        self.img_dir = os.path.join(data_root, "images", split)
        self.ann_dir = os.path.join(data_root, "annotations", split)
        self.img_suffix = img_suffix
        if top_classes is not None and not 1 <= top_classes < len(ADE20K_CLASSES):
            raise ValueError(
                f"ADE20KSegmentation: top_classes must be in 1..{len(ADE20K_CLASSES) - 1}, "
                f"got {top_classes}"
            )
        self.top_classes = top_classes
        metainfo = None
        if top_classes is not None:
            classes = ("background", *ADE20K_CLASSES[:top_classes])
            metainfo = dict(
                classes=classes,
                palette=[tuple(int(c) for c in rgb) for rgb in voc_colormap(len(classes))],
            )
        self.model_classes = None if model_classes is None else tuple(map(str, model_classes))
        super().__init__(
            data_root=data_root,
            ann_file="",
            metainfo=metainfo,
            on_bad_image=on_bad_image,
            pipeline=pipeline,
            test_mode=test_mode,
            indices=indices,
            serialize_data=serialize_data,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )

    def load_data_list(self) -> list[dict]:
        if self.model_classes is not None:
            check_same_classes(self._metainfo["classes"], self.model_classes, self.ann_dir)
        for folder in (self.img_dir, self.ann_dir):
            if not os.path.isdir(folder):
                raise FileNotFoundError(
                    f"ADE20K folder {folder} does not exist; expected ADEChallengeData2016/"
                    f"{{images,annotations}}/{self.split}/ under data_root {self.data_root}"
                )
        stems = sorted(
            name[: -len(self.img_suffix)]
            for name in os.listdir(self.img_dir)
            if name.endswith(self.img_suffix)
        )
        if not stems:
            raise AnnotationError(f"{self.img_dir}: no *{self.img_suffix} images")
        if self.top_classes is None:
            label_map = {0: 255, **{value: value - 1 for value in range(1, FILE_VALUES)}}
        else:
            label_map = {
                0: 255,
                **{
                    value: value if value <= self.top_classes else 0
                    for value in range(1, FILE_VALUES)
                },
            }
        data_list = [
            {
                "img_path": os.path.join(self.img_dir, stem + self.img_suffix),
                "seg_path": os.path.join(self.ann_dir, stem + ".png"),
                "num_classes": FILE_VALUES,
                "label_map": label_map,
                "meta": {"img_id": stem},
            }
            for stem in stems
        ]
        missing = [info["seg_path"] for info in data_list if not os.path.isfile(info["seg_path"])]
        if missing:
            extra = len(missing) - _MAX_LISTED_MISSING
            raise FileNotFoundError(
                f"{len(missing)} images of {self.img_dir} have no annotation: "
                f"{', '.join(missing[:_MAX_LISTED_MISSING])}{f' and {extra} more' if extra > 0 else ''}"
            )
        return data_list
