"""Predict on your own images: a picture and a JSON file per image.

    python tools/predict.py CONFIG CHECKPOINT INPUT... --out-dir DIR
        [--backend torch|onnxruntime|openvino --model FILE.onnx] [--score-thr T] [--topk K]
        [--picture-size N] [--device cpu] [--cfg-options KEY=VALUE ...] [--no-progress]

``INPUT``: image files, folders (walked recursively, in sorted order; hidden files
and folders, and ``DIR`` when it lies inside, are left out) and glob patterns (``"photos/**/*.jpg"``, quoted so the
tool expands them, ``**`` included). Any size, any EXIF orientation (images are
turned upright as viewers show them, :mod:`mtvision.data.image_io`). A progress
bar counts the images on stderr.

For each image, in ``DIR`` (a file found in a folder keeps its path below that
folder, ``DIR/<folder name>/<sub/dirs>/<stem>.*``; a file given directly is
``DIR/<stem>.*``; a name already written in this run gets ``-2``, ``-3``, ...):

- ``<stem>.jpg``: the picture: boxes with class names and scores, the mask's
  colours, the top-k classes in a caption below; a multi-task model draws every
  head on it. A photo larger than ``--picture-size`` (default 1280 pixels on
  the longer side) is drawn scaled down to it, so lines and labels stay
  readable; ``--picture-size 0`` draws at the image's own size;
- ``<stem>_mask.png``: with a segmentation head, the class map as a palette PNG
  (the dataset's or VOC's colours, as VOC's ``SegmentationClass`` files; pixel
  value = class index); ``<stem>_<head>_mask.png`` with several such heads;
- ``<stem>.json``: ``{"image": input path, "width", "height"}`` plus the numbers of
  :class:`mtvision.apis.Inferencer` (boxes xyxy in original pixels, scores,
  labels, label names, top-k classes; the mask as its file name): one head's
  fields at the top level, or ``{head name: fields}`` for a model with several.

``--backend onnxruntime --model FILE.onnx`` runs the exported file
(``tools/export_onnx.py``, float or int8) instead of the checkpoint, with the
same outputs (``--backend openvino``: the same file in OpenVINO);
CHECKPOINT is then read for class names only and may be ``-`` (none).

Bad input: a missing path, a non-image file (in a folder: any file without an
image extension) or a corrupt image is reported on stderr (``skipped <path>:
<reason>``, one line) and skipped; the run goes on, and the end prints how many
images were written and skipped. The exit status is 0 when at least one image
was predicted, else 2 with an ``error:`` line, as for a bad config or checkpoint.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import sys
from collections.abc import Iterator
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from mtvision.apis.inferencer import BACKENDS, SEGMENTATION, Inferencer
from mtvision.engine.cli import add_cfg_options_argument, one_line_message, run_cli
from mtvision.errors import ImageLoadError
from mtvision.utils.atomic_files import atomic_write_bytes, check_output_dir

#: Files in folders that are predicted on (matched case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NO_CHECKPOINT = "-"
JPEG_QUALITY = 95


class ImageJob(NamedTuple):
    """One input image: where it is read from and the output stem (path under DIR, no suffix)."""

    path: str
    stem: str


class Skipped(NamedTuple):
    """An input that is not predicted on, and why."""

    path: str
    reason: str


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Predict on images: a picture and a JSON each.")
    parser.add_argument("config", help="config file path")
    parser.add_argument(
        "checkpoint",
        help="checkpoint (.pth); with --backend onnxruntime/openvino optional: '-' for none",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs")
    parser.add_argument("--out-dir", required=True, help="folder for pictures and JSON files")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--model", metavar="FILE.onnx", help="the exported file to run")
    parser.add_argument(
        "--score-thr",
        type=float,
        default=0.3,
        metavar="T",
        help="keep (and draw) detections scoring at least T (default: 0.3)",
    )
    parser.add_argument("--topk", type=int, default=5, help="classes listed per image")
    parser.add_argument(
        "--picture-size",
        type=int,
        default=1280,
        metavar="N",
        help="draw pictures with their longer side at most N pixels (default: 1280; "
        "0: the image's own size); the JSON is in original pixels either way",
    )
    parser.add_argument("--device", default="cpu", help="torch device (backend torch)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_cfg_options_argument(parser, "model.heads.detection.test_cfg.max_detections=20")
    args = parser.parse_args(argv)
    if args.backend != "torch" and args.model is None:
        parser.error(f"--backend {args.backend} needs --model FILE.onnx")
    if args.backend == "torch" and args.model is not None:
        parser.error("--model FILE.onnx goes with --backend onnxruntime or openvino")
    if args.backend == "torch" and args.checkpoint == NO_CHECKPOINT:
        parser.error("--backend torch needs a CHECKPOINT")
    if args.topk < 1:
        parser.error(f"--topk must be at least 1, got {args.topk}")
    if args.picture_size < 0:
        parser.error(f"--picture-size must be >= 0, got {args.picture_size}")
    return args


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
    inputs: list[str], out_dir: str | None = None
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


def _encode(image: np.ndarray, suffix: str, *params: int) -> bytes:
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(params))
    if not ok:
        raise OSError(f"OpenCV could not encode a {suffix} picture")
    return data.tobytes()


def encode_palette_png(mask: np.ndarray, palette: np.ndarray) -> bytes:
    """A (H, W) uint8 class map as a palette PNG (PIL mode "P"), unused colours black."""
    png = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    full = np.zeros((256, 3), np.uint8)
    full[: min(len(palette), 256)] = palette[:256]
    png.putpalette(full.tobytes())
    buffer = io.BytesIO()
    png.save(buffer, format="PNG")
    return buffer.getvalue()


def format_json(value, indent: str = "") -> str:
    """JSON with one key per line and each innermost list (a box, the scores) on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {format_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + format_json(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value)


def write_outputs(
    inferencer: Inferencer,
    job: ImageJob,
    image: np.ndarray,
    result: dict,
    out_dir: str,
    picture_size: int | None = None,
) -> list[str]:
    """Write the picture, the mask PNG(s) and the JSON of one image; returns their paths."""
    base = os.path.join(out_dir, job.stem)
    files: dict[str, bytes] = {}
    per_head = result if inferencer.multi_head else {next(iter(inferencer.heads)): result}
    segmentation_heads = [n for n in per_head if inferencer.heads[n].task == SEGMENTATION]
    numbers = {}
    for name, head_result in per_head.items():
        head = inferencer.heads[name]
        fields = dict(head_result)
        if head.task == SEGMENTATION:
            suffix = "_mask.png" if len(segmentation_heads) == 1 else f"_{name}_mask.png"
            files[base + suffix] = encode_palette_png(fields["mask"], head.palette)
            fields["mask"] = os.path.basename(base + suffix)
        numbers[name] = fields
    if not inferencer.multi_head:
        (numbers,) = numbers.values()
    height, width = image.shape[:2]
    document = {"image": job.path, "width": width, "height": height, **numbers}
    picture = inferencer.draw(image, result, max_size=picture_size)
    files[base + ".jpg"] = _encode(picture, ".jpg", cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY)
    files[base + ".json"] = (format_json(document) + "\n").encode("utf-8")
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    for path, data in files.items():
        atomic_write_bytes(path, data)
    return list(files)


def main(argv=None) -> dict:
    """Predict as the command line says; returns ``{"written": [...], "skipped": [...]}``."""
    args = parse_args(argv)
    check_output_dir(args.out_dir, "--out-dir")
    jobs, skipped = collect_images(args.inputs, args.out_dir)
    for item in skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    checkpoint = None if args.checkpoint == NO_CHECKPOINT else args.checkpoint
    inferencer = Inferencer(
        args.config,
        checkpoint,
        backend=args.backend,
        model=args.model,
        device=args.device,
        score_threshold=args.score_thr,
        topk=args.topk,
        cfg_options=args.cfg_options,
    )
    written: list[str] = []
    progress = tqdm(jobs, desc="predict", unit="image", disable=args.no_progress or not jobs)
    for job in progress:
        try:
            image = inferencer.load(job.path)
        except ImageLoadError as error:
            reason = one_line_message(error).removeprefix(f"cannot load image {job.path!r}: ")
            skipped.append(Skipped(job.path, reason))
            tqdm.write(f"skipped {job.path}: {reason}", file=sys.stderr)
            continue
        (result,) = inferencer.predict_images([image], [job.path])
        write_outputs(inferencer, job, image, result, args.out_dir, args.picture_size or None)
        written.append(job.path)
    print(f"predicted {len(written)} images into {args.out_dir}, skipped {len(skipped)}")
    if not written:
        raise FileNotFoundError(
            f"no image could be predicted ({len(skipped)} inputs skipped, listed above)"
        )
    return {"written": written, "skipped": [item.path for item in skipped]}


if __name__ == "__main__":
    run_cli(main)
