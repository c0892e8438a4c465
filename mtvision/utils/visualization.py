"""Drawing predictions on images and tiling them into one grid picture."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

GREEN = (40, 200, 40)
RED = (230, 40, 40)
WHITE = (255, 255, 255)


def _put_text(image: np.ndarray, text: str, row: int, color) -> None:
    """Write one line of text on a dark band at text row ``row`` (0 = top) of an RGB image."""
    scale, thickness = 0.4, 1
    (_, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = row * (height + baseline + 4)
    cv2.rectangle(image, (0, top), (image.shape[1], top + height + baseline + 4), (0, 0, 0), -1)
    cv2.putText(
        image,
        text,
        (2, top + height + 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        color,
        thickness,
        cv2.LINE_AA,
    )


def draw_classification(
    image: np.ndarray, classes: Sequence[str], prediction: dict, size: int = 160
) -> np.ndarray:
    """Return a ``size`` x ``size`` RGB tile of ``image`` (HWC uint8 RGB) with its labels.

    First line: predicted class and probability, green when it equals the true
    class and red otherwise; second line: the true class.
    """
    tile = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    pred = int(prediction["pred_label"])
    score = float(prediction["pred_score"][pred])
    gt = prediction.get("gt_label")
    color = WHITE if gt is None else (GREEN if gt == pred else RED)
    _put_text(tile, f"pred: {classes[pred]} {score:.2f}", 0, color)
    if gt is not None:
        _put_text(tile, f"true: {classes[gt]}", 1, WHITE)
    return tile


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
