"""Draw a checkpoint's predictions on validation images into one PNG grid.

    python tools/visualize.py CONFIG CHECKPOINT --out grid.png [--num 16] [--columns 4]

Images are taken evenly spaced over the config's test set, run through the
test pipeline and the model; each tile shows the predicted class and score
(green when right, red when wrong) and the true class.
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import torch

from mtvision.data.collate import collate_samples
from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.model_loading import build_model_from_checkpoint
from mtvision.registry import DATASETS
from mtvision.visualization.draw import draw_classification, tile_grid

#: What the grid can be written as (OpenCV's encoders, matched case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Draw predictions on test images.")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--num", type=int, default=16, help="number of images")
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
    cfg = load_config(args.config, args.cfg_options)
    model = build_model_from_checkpoint(cfg, args.checkpoint)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    classes = dataset.metainfo["classes"]
    indices = np.linspace(0, len(dataset) - 1, num=min(args.num, len(dataset))).round().astype(int)
    batch = collate_samples([dataset[int(i)] for i in indices])
    with torch.no_grad():
        predictions = model.val_step(batch)
    tiles = [
        draw_classification(image.permute(1, 2, 0).numpy().copy(), classes, prediction)
        for image, prediction in zip(batch["inputs"], predictions, strict=True)
    ]
    grid = tile_grid(tiles, columns=args.columns)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {args.out}")
    correct = sum(p["pred_label"] == p.get("gt_label") for p in predictions)
    print(f"wrote {args.out}: {len(tiles)} images, {correct} predicted correctly")
    return grid


if __name__ == "__main__":
    run_cli(main)
