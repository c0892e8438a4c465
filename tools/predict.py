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

from mtvision.apis.inferencer import BACKENDS, Inferencer
from mtvision.apis.prediction_files import predict_to_files
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.utils.atomic_files import check_output_dir

NO_CHECKPOINT = "-"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Predict on images: a picture and a JSON each.")
    parser.add_argument("config", help="config file path")
    parser.add_argument(
        "checkpoint",
        help="checkpoint (.pth); with another --backend optional: '-' for none",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs")
    parser.add_argument("--out-dir", required=True, help="folder for pictures and JSON files")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument(
        "--model", metavar="FILE", help="the exported file to run (.onnx, .tflite, .pte)"
    )
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
        parser.error(f"--backend {args.backend} needs --model FILE (the exported file)")
    if args.backend == "torch" and args.model is not None:
        parser.error(
            f"--model FILE goes with another --backend ({', '.join(BACKENDS[1:])}), not torch"
        )
    if args.backend == "torch" and args.checkpoint == NO_CHECKPOINT:
        parser.error("--backend torch needs a CHECKPOINT")
    if args.topk < 1:
        parser.error(f"--topk must be at least 1, got {args.topk}")
    if args.picture_size < 0:
        parser.error(f"--picture-size must be >= 0, got {args.picture_size}")
    return args


def main(argv=None) -> dict:
    """Predict as the command line says; returns ``{"written": [...], "skipped": [...]}``."""
    args = parse_args(argv)
    check_output_dir(args.out_dir, "--out-dir")
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
    run = predict_to_files(
        inferencer,
        args.inputs,
        args.out_dir,
        picture_size=args.picture_size or None,
        progress=not args.no_progress,
    )
    print(f"predicted {len(run.written)} images into {args.out_dir}, skipped {len(run.skipped)}")
    if not run.written:
        raise FileNotFoundError(
            f"no image could be predicted ({len(run.skipped)} inputs skipped, listed above)"
        )
    return {"written": run.written, "skipped": [item.path for item in run.skipped]}


if __name__ == "__main__":
    run_cli(main)
