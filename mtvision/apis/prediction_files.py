"""Prediction files: a picture and a JSON file per image (what ``tools/predict.py`` writes).

    inferencer = Inferencer(config, checkpoint)
    run = predict_to_files(inferencer, ["photos/", "extra/*.jpg"], "out")
    run.written, run.skipped

Inputs are image files, folders (walked recursively, in sorted order; hidden files
and folders, and the output folder when it lies inside, are left out; in a folder
only files with an image extension, :data:`~mtvision.data.imagenet.IMAGE_EXTENSIONS`)
and glob patterns (``**`` included).

For each image, in the output folder (a file found in a folder keeps its path below
that folder, ``OUT/<folder name>/<sub/dirs>/<stem>.*``; a file given directly is
``OUT/<stem>.*``; a name already taken in the run gets ``-2``, ``-3``, ...):

- ``<stem>.jpg``: :meth:`Inferencer.draw <mtvision.apis.Inferencer.draw>`'s picture;
- the files a head's result has beside the JSON (:meth:`mtvision.tasks.Task.result_files`):
  a segmentation head's class map as a palette PNG, ``<stem>_mask.png``
  (``<stem>_<head>_mask.png`` where several heads write one);
- ``<stem>.json``: ``{"image": input path, "width", "height"}`` plus the result
  (one head's fields at the top level, or ``{head name: fields}`` for a model with
  several), a file's name in place of its field.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from mtvision.apis.inferencer import Inferencer
from mtvision.data.imagenet import IMAGE_EXTENSIONS
from mtvision.engine.cli import one_line_message
from mtvision.errors import ImageLoadError
from mtvision.utils.atomic_files import atomic_write_bytes
from mtvision.visualization.encoders import encode_jpeg

__all__ = [
    "ImageJob",
    "PredictionRun",
    "Skipped",
    "collect_images",
    "format_json",
    "predict_to_files",
    "write_prediction_files",
]


class ImageJob(NamedTuple):
    """One input image: where it is read from and the output stem (path under DIR, no suffix)."""

    path: str
    stem: str


class Skipped(NamedTuple):
    """An input that is not predicted on, and why."""

    path: str
    reason: str


class PredictionRun(NamedTuple):
    """What :func:`predict_to_files` did: the images written and the inputs skipped."""

    written: list[str]
    skipped: list[Skipped]


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _folder_files(folder: str, exclude: str | None = None) -> Iterator[str]:
    """Every file below ``folder``, sorted, hidden files and folders and the folder
    ``exclude`` (the output folder) left out."""
    excluded = None if exclude is None else os.path.realpath(exclude)
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d
            for d in dirs
            if not _is_hidden(d) and os.path.realpath(os.path.join(root, d)) != excluded
        )
        for name in sorted(files):
            if not _is_hidden(name):
                yield os.path.join(root, name)


def collect_images(
    inputs: Sequence[str], out_dir: str | None = None
) -> tuple[list[ImageJob], list[Skipped]]:
    """The images to predict on, with unique output stems, and the inputs skipped.

    A folder's walk leaves ``out_dir`` out, so predicting into a folder inside an
    input folder never reads the pictures of an earlier run."""
    jobs: list[ImageJob] = []
    skipped: list[Skipped] = []
    taken: set[str] = set()
    seen: set[str] = set()

    def add(path: str, stem: str) -> None:
        real = os.path.realpath(path)
        if real in seen:  # given twice (a file and its folder, overlapping globs)
            return
        seen.add(real)
        unique, number = stem, 1
        while unique.lower() in taken:
            number += 1
            unique = f"{stem}-{number}"
        taken.add(unique.lower())
        jobs.append(ImageJob(path, unique))

    def add_folder(folder: str) -> None:
        name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
        for path in _folder_files(folder, out_dir):
            if not path.lower().endswith(IMAGE_EXTENSIONS):
                skipped.append(Skipped(path, "not an image file (by its extension)"))
                continue
            relative = os.path.splitext(os.path.relpath(path, folder))[0]
            add(path, os.path.join(name, relative))

    for given in inputs:
        if os.path.isdir(given):
            add_folder(given)
        elif os.path.lexists(given):
            add(given, os.path.splitext(os.path.basename(given))[0])
        elif glob.has_magic(given):
            matches = sorted(glob.glob(given, recursive=True))
            if not matches:
                skipped.append(Skipped(given, "no file matches this pattern"))
            for match in matches:
                if os.path.isdir(match):
                    add_folder(match)
                else:
                    add(match, os.path.splitext(os.path.basename(match))[0])
        else:
            skipped.append(Skipped(given, "no such file or folder"))
    return jobs, skipped


def format_json(value, indent: str = "") -> str:
    """JSON with one key per line and each innermost list (a box, the scores) on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {format_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + format_json(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value)


def write_prediction_files(
    inferencer: Inferencer,
    job: ImageJob,
    image: np.ndarray,
    result: dict,
    out_dir: str,
    picture_size: int | None = None,
) -> list[str]:
    """Write the picture, the result's own files (mask PNGs) and the JSON of one image;
    returns their paths. ``picture_size``: see :meth:`Inferencer.draw`'s ``max_size``."""
    base = os.path.join(out_dir, job.stem)
    per_head = result if inferencer.multi_head else {next(iter(inferencer.heads)): result}
    numbers, head_files = {}, {}
    for name, head_result in per_head.items():
        head = inferencer.heads[name]
        numbers[name], head_files[name] = head.task.result_files(head_result, head)
    # A field written by one head names its file <stem>_<field>.png, by several
    # <stem>_<head>_<field>.png.
    writers: dict[str, int] = {}
    for fields in head_files.values():
        for field in fields:
            writers[field] = writers.get(field, 0) + 1
    files: dict[str, bytes] = {}
    for name, fields in head_files.items():
        for field, data in fields.items():
            suffix = f"_{field}.png" if writers[field] == 1 else f"_{name}_{field}.png"
            files[base + suffix] = data
            numbers[name][field] = os.path.basename(base + suffix)
    if not inferencer.multi_head:
        (numbers,) = numbers.values()
    height, width = image.shape[:2]
    document = {"image": job.path, "width": width, "height": height, **numbers}
    files[base + ".jpg"] = encode_jpeg(inferencer.draw(image, result, max_size=picture_size))
    files[base + ".json"] = (format_json(document) + "\n").encode("utf-8")
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    for path, data in files.items():
        atomic_write_bytes(path, data)
    return list(files)


def predict_to_files(
    inferencer: Inferencer,
    inputs: Sequence[str],
    out_dir: str,
    picture_size: int | None = 1280,
    progress: bool = True,
) -> PredictionRun:
    """Predict on every image of ``inputs`` and write its files into ``out_dir``.

    A missing path, a non-image file in a folder or an unreadable image is skipped
    and reported on stderr (``skipped <path>: <reason>``, one line each); the run goes
    on. ``progress``: a progress bar on stderr.
    """
    jobs, skipped = collect_images(inputs, out_dir)
    for item in skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    written: list[str] = []
    for job in tqdm(jobs, desc="predict", unit="image", disable=not progress or not jobs):
        try:
            image = inferencer.load(job.path)
        except ImageLoadError as error:
            reason = one_line_message(error).removeprefix(f"cannot load image {job.path!r}: ")
            skipped.append(Skipped(job.path, reason))
            tqdm.write(f"skipped {job.path}: {reason}", file=sys.stderr)
            continue
        (result,) = inferencer.predict_images([image], [job.path])
        write_prediction_files(inferencer, job, image, result, out_dir, picture_size)
        written.append(job.path)
    return PredictionRun(written, skipped)
