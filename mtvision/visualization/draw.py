"""Drawing predictions on images and tiling them into one grid picture."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mtvision.utils.topk import top_k

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


def _name(classes: Sequence[str] | None, label: int) -> str:
    return classes[label] if classes is not None and 0 <= label < len(classes) else str(label)


def draw_classification(
    image: np.ndarray, classes: Sequence[str] | None, prediction: dict, size: int = 160
) -> np.ndarray:
    """Return a tile: ``image`` (HWC uint8 RGB) resized to ``size`` x ``size`` above its labels.

    First caption line: predicted class and probability, green when it equals
    the true class and red otherwise; second line: the true class. The captions
    sit below the picture so they never hide it. ``classes`` None writes numbers.
    """
    picture = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    pred = int(prediction["pred_label"])
    score = float(prediction["pred_score"][pred])
    gt = prediction.get("gt_label")
    color = WHITE if gt is None else (GREEN if gt == pred else RED)
    lines = [(f"pred: {_name(classes, pred)} {score:.2f}", color)]
    lines.append((f"true: {_name(classes, gt)}" if gt is not None else "true: -", WHITE))
    return np.concatenate([picture, _caption(lines, size)], axis=0)


def draw_topk(
    image: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str] | None = None,
    k: int = 5,
    gt_label: int | None = None,
    min_width: int = 160,
) -> np.ndarray:
    """Return ``image`` above a caption listing its ``k`` highest-scoring classes.

    Args:
        image: (H, W, 3) uint8 RGB (kept at its size, padded on the right with
            black to ``min_width`` so the names fit).
        scores: (K,) class scores (e.g. softmax probabilities).
        classes: names by class index; ``None`` writes the indices.
        k: how many classes to list (at most K), best first, one line each:
            ``"1. circle 0.91"``.
        gt_label: the true class: its line is green, a wrong first line red,
            and a last line says ``"true: <name>"``.

    Returns:
        (H + caption height, max(W, min_width), 3) uint8 RGB.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = top_k(scores, max(1, k))
    return draw_ranked(image, order, scores[order], classes, gt_label, min_width)


def draw_ranked(
    image: np.ndarray,
    labels: Sequence[int],
    scores: Sequence[float],
    classes: Sequence[str] | None = None,
    gt_label: int | None = None,
    min_width: int = 160,
) -> np.ndarray:
    """Return ``image`` above a caption listing ``labels`` with their ``scores``, in the
    given order (best first), as :func:`draw_topk` does for the best of a score vector."""
    lines = []
    for rank, (label, score) in enumerate(zip(labels, scores, strict=True)):
        color = WHITE
        if gt_label is not None and label == gt_label:
            color = GREEN
        elif gt_label is not None and rank == 0:
            color = RED
        lines.append((f"{rank + 1}. {_name(classes, int(label))} {float(score):.2f}", color))
    if gt_label is not None:
        lines.append((f"true: {_name(classes, int(gt_label))}", WHITE))
    width = max(image.shape[1], min_width)
    picture = np.zeros((image.shape[0], width, 3), np.uint8)
    picture[:, : image.shape[1]] = image
    return np.concatenate([picture, _caption(lines, width)], axis=0)


def tile_grid(tiles: Sequence[np.ndarray], columns: int = 4, gap: int = 4) -> np.ndarray:
    """Arrange HWC tiles row by row on a white canvas.

    Every cell is as large as the largest tile; a smaller tile sits in its
    cell's top-left corner.
    """
    if not tiles:
        raise ValueError("tile_grid needs at least one tile")
    height = max(tile.shape[0] for tile in tiles)
    width = max(tile.shape[1] for tile in tiles)
    rows = (len(tiles) + columns - 1) // columns
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = gap + r * (height + gap), gap + c * (width + gap)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return canvas


def class_color(label: int) -> tuple[int, int, int]:
    """A bright RGB colour for a class index, distinct for neighbouring labels.

    Hues step by the golden ratio around the colour wheel, so any few
    consecutive labels get clearly different colours.
    """
    hue = int((label * 0.618033988749895 % 1.0) * 180)  # OpenCV hue range is 0..179
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str] | None = None,
    score_threshold: float = 0.3,
    thickness: int = 2,
) -> np.ndarray:
    """Return a copy of ``image`` with the detections scoring >= ``score_threshold`` drawn.

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes: (K, 4) xyxy pixels of ``image``.
        labels: (K,) class indices; ``classes[label]`` is written (the number
            when ``classes`` is None) with the score, on a filled tag above the
            box (inside it when the box touches the top edge).
        scores: (K,) confidences.

    Each class has its own colour (:func:`class_color`); the lowest scores are
    drawn first so the most confident boxes stay on top.
    """
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels, scores = np.asarray(labels).reshape(-1), np.asarray(scores).reshape(-1)
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    for k in np.argsort(scores, kind="stable"):
        if scores[k] < score_threshold:
            continue
        label = int(labels[k])
        color = class_color(label)
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        text = f"{_name(classes, label)} {scores[k]:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, 1)
        tag_h = text_h + baseline + 2
        top = y1 - tag_h if y1 - tag_h >= 0 else y1
        cv2.rectangle(canvas, (x1, top), (x1 + text_w + 2, top + tag_h), color, cv2.FILLED)
        cv2.putText(
            canvas, text, (x1 + 1, top + text_h + 1), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    return canvas


def draw_segmentation(
    image: np.ndarray,
    mask: np.ndarray,
    palette: np.ndarray | Sequence[Sequence[int]],
    alpha: float = 0.5,
    unpainted_labels: Sequence[int] = (0, 255),
) -> np.ndarray:
    """Return ``image`` blended with the colours of ``mask``.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) integer class map of the same size.
        palette: (N, 3) RGB colour of each label (e.g. the VOC colormap).
        alpha: weight of the colour: ``out = (1 - alpha) * image + alpha * colour``.
        unpainted_labels: labels whose pixels keep the image as it is
            (background and VOC's 255 "ignore"), so objects stand out.
    """
    image = np.asarray(image, dtype=np.uint8)
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    painted = ~np.isin(mask, list(unpainted_labels))
    if painted.any() and (mask[painted].min() < 0 or mask[painted].max() >= len(palette)):
        raise ValueError(
            f"mask labels {mask[painted].min()}..{mask[painted].max()} have no colour in a "
            f"palette of {len(palette)}"
        )
    out = image.copy()
    colours = palette[mask[painted]].astype(np.float64)
    out[painted] = np.round((1.0 - alpha) * image[painted] + alpha * colours).astype(np.uint8)
    return out


@dataclass(frozen=True)
class DrawOptions:
    """How a picture of predictions is drawn.

    ``score_threshold``: boxes scoring below it are not drawn; ``alpha``: colour weight
    of a mask overlay; ``topk``: classes listed in a caption.
    """

    score_threshold: float = 0.3
    alpha: float = 0.5
    topk: int = 5


def draw_prediction(
    image: np.ndarray,
    heads: Sequence[tuple[object, Mapping]],
    options: DrawOptions | None = None,
    results: bool = False,
    scale: float = 1.0,
) -> np.ndarray:
    """One picture of several heads' predictions for ``image``, layered in each task's
    ``draw_order``: the masks' colours, then the boxes, then the captions below.

    Args:
        image: (H, W, 3) uint8 RGB, the image the predictions' pixels refer to.
        heads: ``(head, fields)`` pairs; ``head`` a :class:`~mtvision.tasks.HeadInfo`
            (name, task adapter, class names, palette), ``fields`` that head's
            prediction (``MultiTaskModel.predict`` fields, tensors or arrays) or, with
            ``results``, its result dict (:meth:`~mtvision.tasks.Task.result`).
        options: threshold, overlay weight, caption length (default :class:`DrawOptions`).
        scale: with ``results``, picture pixels per result pixel (a scaled-down photo).

    Raises:
        ValueError: ``heads`` is empty.
    """
    if not heads:
        raise ValueError("draw_prediction needs at least one head's prediction")
    options = options or DrawOptions()
    picture = image
    for head, fields in sorted(heads, key=lambda pair: pair[0].task.draw_order):
        if results:
            picture = head.task.draw_result(picture, fields, head, options, scale)
        else:
            picture = head.task.draw(picture, fields, head, options)
    return picture
