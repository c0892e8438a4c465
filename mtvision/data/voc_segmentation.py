"""PASCAL VOC 2012 semantic segmentation, plus the SBD-augmented ``train_aug`` set.

Layout (``data_root`` is the ``VOC2012`` folder)::

    VOCdevkit/VOC2012/
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png        palette ('P') PNGs, value = class index, 255 = ignore
      SegmentationClassAug/<id>.png     SBD-augmented masks, grayscale ('L') index PNGs
      ImageSets/Segmentation/train.txt, val.txt, trainval.txt, train_aug.txt   one <id> a line

``train_aug`` (10,582 images: VOC train + SBD, without VOC val) is laid out as
mmseg and TF-DeepLab users convert it: masks in ``SegmentationClassAug`` and
the id list in ``ImageSets/Segmentation/train_aug.txt``.

Labels: 0 = background, 1..20 the VOC classes in :data:`VOC_CLASSES` order,
255 = ignore (object boundaries and "difficult" regions).

Class selection (mmseg's rule): ``classes`` that are a proper subset of
:data:`VOC_CLASSES` select those classes. Masks are relabelled on load (the
``label_map`` of each sample, applied by :class:`~mtvision.data.mask_io.LoadMask`):
a selected class gets its index in ``classes``, every other class becomes 255
(ignored), so the model learns and :class:`~mtvision.evaluation.MeanIoU`
scores only the selected classes. Other ``classes`` (names not all VOC's, as
the synthetic shapes set has) just name the mask values.
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

__all__ = ["VOC_CLASSES", "VOCSegmentation", "voc_palette"]

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 21 PASCAL VOC segmentation classes; a class's index is its mask value."""

_MAX_LISTED_MISSING = 5


def voc_palette(num_classes: int = len(VOC_CLASSES)) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colours of class indices 0..num_classes-1, as (R, G, B) tuples."""
    return [tuple(int(c) for c in rgb) for rgb in voc_colormap(num_classes)]


@DATASETS.register_module()
class VOCSegmentation(BaseDataset):
    """Images and class-index masks listed in ``ImageSets/Segmentation/<split>.txt``.

    ``load_data_list`` gives one dict per listed id, in list order::

        {"img_path": str, "seg_path": str, "num_classes": int, "meta": {"img_id": "<id>"},
         "label_map": {int: int}}          # only when classes select a subset of VOC's

    (``get_data_info`` adds ``sample_idx``). A pipeline reads them with
    ``LoadImage`` and :class:`~mtvision.data.mask_io.LoadMask`, which checks
    the mask values against ``num_classes`` (the mask files' classes) and
    applies ``label_map``. ``metainfo`` holds ``classes``
    (names, index = mask value) and ``palette`` (one (R, G, B) per class).

    Every listed image and mask must exist: a missing file is reported when
    the dataset is built, with the first few missing paths (and a file whose
    name differs only in case), not in the middle of training. An empty list
    or an id listed twice is an :class:`~mtvision.errors.AnnotationError`.

    Args:
        data_root: the ``VOC2012`` folder.
        split: name of the id list; ``"train"``, ``"val"``, ``"trainval"`` or
            ``"train_aug"``.
        ann_file: the id list file, relative to ``data_root`` or absolute;
            default ``ImageSets/Segmentation/<split>.txt``.
        img_dir: image folder under ``data_root``.
        mask_dir: mask folder under ``data_root``; default
            ``SegmentationClassAug`` for ``split="train_aug"``, else
            ``SegmentationClass``.
        img_suffix, mask_suffix: file name endings after the id.
        classes: class names, index = mask value (default :data:`VOC_CLASSES`;
            the synthetic shapes set uses ``("background", *SHAPE_CLASSES)``).
            ``metainfo=dict(classes=...)`` (OpenMMLab style) does the same.
            A proper subset of :data:`VOC_CLASSES` selects classes (see the
            module docstring). The palette defaults to the VOC colours of the
            classes (of the first ``len(classes)`` indices for other names).
        model_classes: the class names of the model this split is scored
            against (tools/eval.py and the val loop pass them,
            :mod:`~mtvision.data.label_space`): they must equal the classes
            (mask values are class indices, fixed by the files), else an
            :class:`~mtvision.errors.AnnotationError` names both lists.
        on_bad_image, pipeline, test_mode: see :class:`BaseDataset`
            (``"skip"`` also skips unreadable or invalid masks in training).
        indices, serialize_data, lazy_init, max_refetch: mmengine's
            ``BaseDataset`` arguments (``indices=N`` keeps the first N samples).
    """

    METAINFO = {"classes": VOC_CLASSES, "palette": voc_palette()}

    def __init__(
        self,
        data_root: str | os.PathLike,
        split: str = "train",
        ann_file: str | os.PathLike | None = None,
        img_dir: str = "JPEGImages",
        mask_dir: str | None = None,
        img_suffix: str = ".jpg",
        mask_suffix: str = ".png",
        classes: Sequence[str] | None = None,
        metainfo: dict | None = None,
        model_classes: Sequence[str] | None = None,
        on_bad_image: Literal["raise", "skip"] = "raise",
        pipeline: Sequence = (),
        test_mode: bool = False,
        indices: int | Sequence[int] | None = None,
        serialize_data: bool = True,
        lazy_init: bool = False,
        max_refetch: int = 1000,
    ) -> None:
        data_root = os.fspath(data_root)
        if mask_dir is None:
            mask_dir = "SegmentationClassAug" if split == "train_aug" else "SegmentationClass"
        if ann_file is None:
            ann_file = os.path.join("ImageSets", "Segmentation", f"{split}.txt")
        self.split = split
        self.img_dir = os.path.join(data_root, img_dir)
        self.mask_dir = os.path.join(data_root, mask_dir)
        self.img_suffix = img_suffix
        self.mask_suffix = mask_suffix
        self.model_classes = None if model_classes is None else tuple(map(str, model_classes))
        super().__init__(
            data_root=data_root,
            ann_file=os.fspath(ann_file),
            metainfo=_metainfo_with_palette(metainfo, classes),
            on_bad_image=on_bad_image,
            pipeline=pipeline,
            test_mode=test_mode,
            indices=indices,
            serialize_data=serialize_data,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )

    def load_data_list(self) -> list[dict]:
        ids = self._read_ids()
        classes = tuple(self._metainfo["classes"])
        if self.model_classes is not None:
            # A mask value is a class index: the files fix the labels, nothing to remap.
            check_same_classes(classes, self.model_classes, self.mask_dir)
        label_map = selection_label_map(classes, VOC_CLASSES)
        # The mask files hold VOC's indices when the classes select some of them.
        num_classes = len(VOC_CLASSES) if label_map else len(classes)
        data_list = [
            {
                "img_path": os.path.join(self.img_dir, f"{img_id}{self.img_suffix}"),
                "seg_path": os.path.join(self.mask_dir, f"{img_id}{self.mask_suffix}"),
                "num_classes": num_classes,
                "meta": {"img_id": img_id},
                **({"label_map": label_map} if label_map else {}),
            }
            for img_id in ids
        ]
        self._check_files_exist(data_list)
        return data_list

    def _read_ids(self) -> list[str]:
        if not os.path.isdir(self.data_root):
            raise FileNotFoundError(
                f"VOC data root {self.data_root} does not exist; expected the VOC2012 folder "
                "holding JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/"
            )
        if not os.path.isfile(self.ann_file):
            listed = os.path.dirname(self.ann_file)
            found = sorted(os.listdir(listed)) if os.path.isdir(listed) else []
            raise FileNotFoundError(
                f"id list {self.ann_file} for split {self.split!r} does not exist "
                f"({listed} holds {found[:10]})"
            )
        return read_id_list(self.ann_file)

    def _check_files_exist(self, data_list: list[dict]) -> None:
        missing = [
            path
            for info in data_list
            for path in (info["img_path"], info["seg_path"])
            if not os.path.isfile(path)
        ]
        if missing:
            shown = ", ".join(missing[:_MAX_LISTED_MISSING]) + _other_case(missing[0])
            extra = len(missing) - _MAX_LISTED_MISSING
            more = f" and {extra} more" if extra > 0 else ""
            raise FileNotFoundError(
                f"{len(missing)} files for the ids listed in {self.ann_file} are missing: "
                f"{shown}{more}"
            )


def read_id_list(path: str) -> list[str]:
    """The image ids of a VOC ``ImageSets`` list, one a line, in order.

    A line may carry more than the id (``"<id>  1"`` per-class lists); the id
    comes first. Blank lines and Windows line ends are fine.

    Raises:
        AnnotationError: the list is empty, or lists an id twice (that image
            would be trained on and evaluated twice), naming the file and lines.
    """
    with open(path, encoding="utf-8") as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise AnnotationError(f"{path}: the image list is empty")
    first_line: dict[str, int] = {}
    for line_number, img_id in enumerate(ids, start=1):
        if img_id in first_line:
            raise AnnotationError(
                f"{path}: image id {img_id!r} is listed twice (lines {first_line[img_id]} "
                f"and {line_number}); it would be trained on and evaluated twice"
            )
        first_line[img_id] = line_number
    return ids


def _other_case(path: str) -> str:
    """A hint when ``path``'s folder holds the same name in another case (``.JPG``)."""
    folder, name = os.path.split(path)
    try:
        same = [n for n in os.listdir(folder) if n.lower() == name.lower() and n != name]
    except OSError:
        return ""
    if not same:
        return ""
    return f" (the folder has {same[0]!r}: names are case-sensitive; set img_suffix/mask_suffix)"


def selection_label_map(
    classes: Sequence[str], all_classes: Sequence[str], ignore_index: int = 255
) -> dict[int, int] | None:
    """Mask value in ``all_classes`` -> index in ``classes``, ``ignore_index`` for classes
    not selected; ``None`` unless ``classes`` is a proper subset of ``all_classes`` (then
    the names just name the mask values)."""
    if tuple(classes) == tuple(all_classes) or not set(classes) <= set(all_classes):
        return None
    return {
        old: classes.index(name) if name in classes else ignore_index
        for old, name in enumerate(all_classes)
    }


def _metainfo_with_palette(metainfo: dict | None, classes: Sequence[str] | None) -> dict:
    """``metainfo`` with ``classes`` applied and a VOC palette sized to the classes."""
    metainfo = dict(metainfo or {})
    if classes is not None:
        metainfo["classes"] = tuple(classes)
    # A string names a file of class names, which mmengine's BaseDataset reads.
    if "classes" in metainfo and not isinstance(metainfo["classes"], str):
        metainfo["classes"] = tuple(metainfo["classes"])
        if not 1 <= len(metainfo["classes"]) <= 255:
            raise ValueError(
                f"VOCSegmentation: need 1..255 classes (255 is the ignore value), "
                f"got {len(metainfo['classes'])}"
            )
        colours = voc_palette()
        if selection_label_map(metainfo["classes"], VOC_CLASSES):
            palette = [colours[VOC_CLASSES.index(name)] for name in metainfo["classes"]]
        else:
            palette = voc_palette(len(metainfo["classes"]))
        metainfo.setdefault("palette", palette)
    return metainfo
