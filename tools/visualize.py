"""Draw a checkpoint's predictions on test images into one PNG grid.

    python tools/visualize.py CONFIG CHECKPOINT --out grid.png [--num 16] [--columns 4]

Images are taken evenly spaced over the config's test set, run through the
test pipeline and the model. A classifier's tile shows the predicted class and
score (green when right, red when wrong) and the true class. Any other
prediction is drawn as ``eval.py --show-dir`` draws it, on the original image
scaled to the tile: the mask's colours, the boxes with class names and the
top-5 classes below, whichever the model predicts (a multi-task model: all
three on one tile).

A multi-task config with several evaluation entries (``test_dataloader =
dict(coco=..., voc=...)``, docs/multitask.md) gives ``--num`` images of each
entry, drawn with the heads its evaluator scores, one entry after the other.
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from mtvision.apis.prediction_grid import prediction_grid
from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.model_source import ModelSource
from mtvision.utils.atomic_files import check_output_file

#: What the grid can be written as (OpenCV's encoders, matched case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Draw predictions on test images.")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--num", type=int, default=16, help="number of images (of each evaluation entry)"
    )
    parser.add_argument("--columns", type=int, default=4)
    add_cfg_options_argument(parser, "test_dataloader.dataset.data_root=DIR")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(IMAGE_SUFFIXES):
        parser.error(f"--out {args.out}: use an image file ({', '.join(IMAGE_SUFFIXES)})")
    for name in ("num", "columns"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv=None) -> np.ndarray:
    """Write the grid; returns it as an HWC uint8 RGB array."""
    args = parse_args(argv)
    check_output_file(args.out, "--out", example="grid.png")
    cfg = load_config(args.config, args.cfg_options)
    model = ModelSource(cfg, args.checkpoint).build_model()
    grid, num_tiles, correct, classified = prediction_grid(cfg, model, args.num, args.columns)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {args.out}")
    summary = f", {correct} of {classified} classified correctly" if classified else ""
    print(f"wrote {args.out}: {num_tiles} images{summary}")
    return grid


if __name__ == "__main__":
    run_cli(main)
