"""Drawing predictions on images and tiling them into one grid picture."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

GREEN = (40, 200, 40)
RED = (230, 40, 40)
WHITE = (255, 255, 255)


def _caption(lines: Sequence[tuple[str, tuple[int, int, int]]], width: int) -> np.ndarray:
    """A black RGB strip holding one coloured text line per ``(text, color)``."""
    scale, thickness, line_height = 0.4, 1, 16
    strip = np.zeros((line_height * len(lines) + 4, width, 3), np.uint8)
    for row, (text, color) in enumerate(lines):
        baseline = line_height * (row + 1)
        cv2.putText(
            strip,
            text,
            (3, baseline - 3),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            color,
            thickness,
            cv2.LINE_AA,
        )
    return strip


def draw_classification(
    image: np.ndarray, classes: Sequence[str], prediction: dict, size: int = 160
) -> np.ndarray:
    """Return a tile: ``image`` (HWC uint8 RGB) resized to ``size`` x ``size`` above its labels.

    First caption line: predicted class and probability, green when it equals
    the true class and red otherwise; second line: the true class. The captions
    sit below the picture so they never hide it.
    """
    picture = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    pred = int(prediction["pred_label"])
    score = float(prediction["pred_score"][pred])
    gt = prediction.get("gt_label")
    color = WHITE if gt is None else (GREEN if gt == pred else RED)
    lines = [(f"pred: {classes[pred]} {score:.2f}", color)]
    lines.append((f"true: {classes[gt]}" if gt is not None else "true: -", WHITE))
    return np.concatenate([picture, _caption(lines, size)], axis=0)


def tile_grid(tiles: Sequence[np.ndarray], columns: int = 4, gap: int = 4) -> np.ndarray:
    """Arrange equally sized HWC tiles row by row on a white canvas."""
    if not tiles:
        raise ValueError("tile_grid needs at least one tile")
    height, width = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = gap + r * (height + gap), gap + c * (width + gap)
        canvas[y : y + height, x : x + width] = tile
    return canvas
