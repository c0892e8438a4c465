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
import contextlib
import os

import cv2
import numpy as np
import torch

from mtvision.data.collate import collate_samples
from mtvision.data.image_io import load_image
from mtvision.engine import load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.config import test_dataset_entries
from mtvision.engine.model_loading import build_model_from_checkpoint
from mtvision.registry import DATASETS
from mtvision.utils.arrays import to_numpy
from mtvision.utils.atomic_files import check_output_file
from mtvision.utils.metainfo import task_metainfo
from mtvision.visualization.draw import draw_classification, draw_prediction, tile_grid
from mtvision.visualization.show_predictions_hook import task_classes, task_palette

#: What the grid can be written as (OpenCV's encoders, matched case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
TILE_SIZE = 160


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


def _scaled(image: np.ndarray, prediction: dict, size: int) -> tuple[np.ndarray, dict]:
    """``image`` and the prediction's boxes and mask scaled to ``size`` x ``size``."""
    height, width = image.shape[:2]
    prediction = dict(prediction)
    if "boxes" in prediction:
        scale = np.array([size / width, size / height] * 2)
        prediction["boxes"] = to_numpy(prediction["boxes"], np.float64).reshape(-1, 4) * scale
    if "pred_mask" in prediction:
        mask = to_numpy(prediction["pred_mask"]).astype(np.uint8)
        prediction["pred_mask"] = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), prediction


def draw_tile(input_image: torch.Tensor, prediction: dict, metainfo: dict) -> np.ndarray:
    """One tile of the grid: a classifier's on the network input, anything else on the
    original image (the pixels boxes and masks are predicted in)."""
    if not any(key in prediction for key in ("boxes", "pred_mask")):
        classes = task_metainfo(metainfo, "classification")["classes"]
        image = input_image.permute(1, 2, 0).numpy().copy()
        return draw_classification(image, classes, prediction, TILE_SIZE)
    image, prediction = _scaled(load_image(prediction["meta"]["img_path"]), prediction, TILE_SIZE)
    classes = {task: task_classes(metainfo, task) for task in ("detection", "classification")}
    palette = task_palette(metainfo) if "pred_mask" in prediction else None
    return draw_prediction(image, prediction, classes, palette)


def main(argv=None) -> np.ndarray:
    """Write the grid; returns it as an HWC uint8 RGB array."""
    args = parse_args(argv)
    check_output_file(args.out, "--out", example="grid.png")
    cfg = load_config(args.config, args.cfg_options)
    model = build_model_from_checkpoint(cfg, args.checkpoint)
    tiles, correct, classified = [], 0, 0
    for _, dataset_cfg, heads in test_dataset_entries(cfg):
        dataset = DATASETS.build(dataset_cfg)
        count = min(args.num, len(dataset))
        indices = np.linspace(0, len(dataset) - 1, num=count).round().astype(int)
        batch = collate_samples([dataset[int(i)] for i in indices])
        restrict = model.active_heads(heads) if heads is not None else contextlib.nullcontext()
        with torch.no_grad(), restrict:
            predictions = model.val_step(batch)
        for image, prediction in zip(batch["inputs"], predictions, strict=True):
            tiles.append(draw_tile(image, prediction, dataset.metainfo))
            if "pred_label" in prediction and prediction.get("gt_label") is not None:
                classified += 1
                correct += int(prediction["pred_label"] == prediction["gt_label"])
    grid = tile_grid(tiles, columns=args.columns)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {args.out}")
    summary = f", {correct} of {classified} classified correctly" if classified else ""
    print(f"wrote {args.out}: {len(tiles)} images{summary}")
    return grid


if __name__ == "__main__":
    run_cli(main)
