"""ImageNet-style class-folder dataset (torchvision ``ImageFolder`` semantics).

Layout::

    data_root/
      train/
        n01440764/  *.JPEG, *.png, ...
        n01443537/
        ...
      val/
        n01440764/
        ...

Classes are the sorted class-folder names (or the ``classes`` given), labels
their indices; images are found recursively under each class folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Literal

from mmengine.logging import print_log

from mtvision.data.base_dataset import BaseDataset
from mtvision.data.label_space import model_label_of
from mtvision.registry import DATASETS

__all__ = ["IMAGE_EXTENSIONS", "ImageNetFolder"]

#: File extensions read as images (torchvision's list), matched case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_MAX_LISTED_LINKS = 10  # links not followed, named one by one in the warning


@DATASETS.register_module()
class ImageNetFolder(BaseDataset):
    """Images in ``data_root/<split>/<class_folder>/``, labelled by folder.

    ``load_data_list`` gives ``{"img_path": str, "label": int}`` per image
    (``get_data_info`` adds ``sample_idx``), sorted by class then path;
    ``metainfo["classes"]`` is the tuple of class names, index = label.

    Args:
        data_root: folder holding the split folders.
        split: split folder name, e.g. ``"train"`` or ``"val"``.
        classes: class-folder names in label order; ``None`` uses all class
            folders, sorted. Fixing it keeps labels identical across splits
            and selects a subset of classes (other folders are ignored).
            OpenMMLab's ``metainfo=dict(classes=...)`` does the same.
        on_empty_class: ``"raise"`` (default) when a class folder is missing
            or holds no image, or ``"skip"`` to log one warning listing them.
            A skipped class keeps its name and label index, so labels still
            match other splits; it just has no samples.
        model_classes: the class names of the model this split is scored
            against, index = label (tools/eval.py and the val loop pass the
            checkpoint's / training data's, :mod:`~mtvision.data.label_space`).
            Each folder (of ``classes``, or every folder) is labelled with its
            name's index there, so a split lacking some folders keeps the
            model's labels; the model's classes without a folder are logged
            once as empty classes; a folder that is no class of the model is
            an :class:`~mtvision.errors.AnnotationError` naming both lists.
            ``metainfo["classes"]`` is then ``model_classes``.
        on_bad_image, pipeline, test_mode: see :class:`BaseDataset`
            (``"skip"`` drops unreadable images in training, counted and logged).
        metainfo, indices, serialize_data, lazy_init, max_refetch: mmengine's
            ``BaseDataset`` arguments (``indices=N`` keeps the first N samples).

    What a class folder may hold: images with any case of an extension of
    :data:`IMAGE_EXTENSIONS` (``.JPEG``, ``.Png``) are samples; other files
    (``.txt``, ``Thumbs.db``) and hidden entries (names starting with ``.``) are
    ignored; symbolic links are followed, each real folder walked once, never
    back up the tree or into another class's folder (no loop, no repeated
    image, no image under two labels; one warning names each link not followed
    and why); broken links, empty and
    corrupt files fail when loaded, naming the file (or are skipped with
    ``on_bad_image="skip"``).
    """

    def __init__(
        self,
        data_root: str | os.PathLike,
        split: str = "train",
        classes: Sequence[str] | None = None,
        on_empty_class: Literal["raise", "skip"] = "raise",
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
        if on_empty_class not in ("raise", "skip"):
            raise ValueError(f"on_empty_class must be 'raise' or 'skip', got {on_empty_class!r}")
        self.split = split
        self.split_dir = os.path.join(os.fspath(data_root), split)
        self.fixed_classes = None if classes is None else tuple(classes)
        self.on_empty_class = on_empty_class
        self.model_classes = None if model_classes is None else tuple(map(str, model_classes))
        self.skipped_links: list[str] = []
        super().__init__(
            data_root=os.fspath(data_root),
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
        self._check_split_dir()
        classes = (
            self.fixed_classes
            or tuple(self._metainfo.get("classes", ()))
            or self._find_class_folders()
        )
        if self.model_classes is None:
            label_of, absent = {name: label for label, name in enumerate(classes)}, []
            self._metainfo["classes"] = classes
        else:
            label_of, absent = model_label_of(classes, self.model_classes, self.split_dir)
            self._metainfo["classes"] = self.model_classes
            self.fixed_classes = classes  # the folders read, should the list be loaded again

        data_list: list[dict] = []
        empty: list[str] = []
        skipped_links: list[str] = []
        for name in classes:
            paths = _image_files_under(
                os.path.join(self.split_dir, name), self.split_dir, skipped_links
            )
            if not paths:
                empty.append(name)
            data_list.extend({"img_path": path, "label": label_of[name]} for path in paths)
        data_list.sort(key=lambda info: info["label"])  # stable: by label, then path

        self.skipped_links = skipped_links
        if skipped_links:
            print_log(
                f"ImageNetFolder: {len(skipped_links)} folder link"
                f"{'s' if len(skipped_links) > 1 else ''} in {self.split_dir} not followed: {'; '.join(skipped_links[:_MAX_LISTED_LINKS])}"
                + (
                    f"; and {len(skipped_links) - _MAX_LISTED_LINKS} more"
                    if len(skipped_links) > _MAX_LISTED_LINKS
                    else ""
                ),  # fmt: skip
                logger="current",
                level=logging.WARNING,
            )
        if absent:
            print_log(
                f"ImageNetFolder: {len(absent)} of the model's {len(self.model_classes)} "
                f"classes have no folder in {self.split_dir}: {', '.join(absent)}; they are "
                "scored as classes without images (the other folders keep the model's labels)",
                logger="current",
                level=logging.WARNING,
            )
        if empty:
            problem = (
                f"{len(empty)} of {len(classes)} class folders in {self.split_dir} are "
                f"missing or hold no image ({'/'.join(IMAGE_EXTENSIONS)}): {', '.join(empty)}"
            )
            if self.on_empty_class == "raise":
                raise FileNotFoundError(
                    f"{problem}; pass on_empty_class='skip' to train without them"
                )
            print_log(f"ImageNetFolder: skipped {problem}", logger="current", level=logging.WARNING)
        return data_list

    def _expected_layout(self) -> str:
        return f"expected layout {os.path.join(self.data_root, '<split>', '<class_name>', '<image>.jpg')}"

    def _check_split_dir(self) -> None:
        if not os.path.isdir(self.data_root):
            raise FileNotFoundError(
                f"ImageNet data root {self.data_root} does not exist; {self._expected_layout()}"
            )
        if not os.path.isdir(self.split_dir):
            found = sorted(e for e in os.listdir(self.data_root) if not e.startswith("."))
            raise FileNotFoundError(
                f"split folder {self.split_dir} does not exist (the data root holds {found[:10]}); "
                f"{self._expected_layout()}"
            )

    def _find_class_folders(self) -> tuple[str, ...]:
        with os.scandir(self.split_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        if not names:
            raise FileNotFoundError(
                f"no class folders in {self.split_dir}; {self._expected_layout()}"
            )
        return tuple(names)


def _image_files_under(folder: str, split_dir: str, skipped_links: list[str]) -> list[str]:
    """Sorted paths of the image files anywhere under the class ``folder`` ([] if it does
    not exist).

    Symbolic links are followed (a class folder may link to images kept
    elsewhere), but each real directory is walked once, and a link to the split
    folder, to an ancestor, or into another class's folder is not followed: its
    images would repeat without end, or join this class under the wrong label.
    Each folder not walked is described in ``skipped_links`` (the link, its
    target and why). Broken links stay in the list; loading one names it.
    """
    split_real = os.path.realpath(split_dir)
    class_real = os.path.realpath(folder)
    paths = []
    visited: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        # Elsewhere in the split (another class) or above it (the split again).
        into_split = _is_within(real, split_real) or _is_within(split_real, real)
        if real in visited or (into_split and not _is_within(real, class_real)):
            dirs[:] = []
            skipped_links.append(_why_not_followed(root, real, class_real, split_real))
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(
            os.path.join(root, f)
            for f in sorted(files)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        )
    return paths


def _why_not_followed(link: str, real: str, class_real: str, split_real: str) -> str:
    """``"<link> -> <target>: <reason>"`` for a folder link the walk does not enter."""
    if real == class_real:
        why = "its own class folder again: its images would repeat"
    elif _is_within(class_real, real):
        why = "an ancestor of its class folder: its images would repeat without end"
    elif _is_within(real, split_real):
        other = os.path.relpath(real, split_real).split(os.sep)[0]
        why = f"inside class folder '{other}': its images would get a second label"
    else:
        why = "a folder already walked for this class: its images would repeat"
    return f"{link} -> {real} ({why})"


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
