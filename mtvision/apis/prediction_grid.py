"""A grid of a model's predictions on test images (``tools/visualize.py``).

Images are taken evenly spaced over each test dataset of a config
(:func:`~mtvision.engine.model_source.test_dataset_entries`), run through its test
pipeline and the model (each evaluation entry with the heads its evaluator
scores). A tile shows every head that predicted, each drawn by its task adapter
(:mod:`mtvision.tasks`) with the class names of its head name: predictions in
original-image pixels (boxes, masks) on the original image scaled to the tile,
a prediction that is not (a classifier's) as its own tile on the network input.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import cv2
import numpy as np
import torch
from mmengine.config import Config

from mtvision.data.collate import collate_samples
from mtvision.data.image_io import load_image
from mtvision.engine.model_source import test_dataset_entries
from mtvision.registry import DATASETS
from mtvision.tasks import HeadInfo, Task, predicted_heads
from mtvision.visualization.draw import draw_prediction, tile_grid

__all__ = ["PredictionGrid", "draw_tile", "prediction_grid"]

TILE_SIZE = 160


class PredictionGrid(NamedTuple):
    """The grid picture (H, W, 3) uint8 RGB, its number of tiles, and how many of the
    images with a true class were classified correctly."""

    picture: np.ndarray
    num_tiles: int
    correct: int
    classified: int


def draw_tile(
    input_image: torch.Tensor,
    prediction: dict,
    metainfo: dict | None,
    heads: dict[str, Task] | None = None,
    size: int = TILE_SIZE,
) -> np.ndarray:
    """One ``size`` x ``size`` tile (plus captions) of one image's merged prediction.

    ``input_image``: the (3, H, W) uint8 network input; ``heads``: ``{name: task}`` of
    the heads that ran (None: each task whose fields are present, named after it).

    Raises:
        KeyError: the prediction holds no head's fields.
    """
    present = {
        name: HeadInfo.from_metainfo(name, task, metainfo)
        for name, task in predicted_heads(prediction, heads).items()
    }
    if not present:
        raise KeyError(f"no head's prediction fields in {sorted(prediction)}")
    if not any(head.task.in_image_pixels for head in present.values()):
        head = next(iter(present.values()))
        image = input_image.permute(1, 2, 0).numpy().copy()
        return head.task.draw_tile(image, prediction, head, size)
    image = load_image(prediction["meta"]["img_path"])
    height, width = image.shape[:2]
    for head in present.values():
        prediction = head.task.scaled(prediction, size / width, size / height, (size, size))
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return draw_prediction(image, [(head, prediction) for head in present.values()])


def prediction_grid(cfg: Config, model, num: int = 16, columns: int = 4) -> PredictionGrid:
    """``num`` images of each test dataset of ``cfg`` predicted by ``model`` (a
    ``MultiTaskModel``) and tiled, ``columns`` per row."""
    tiles, correct, classified = [], 0, 0
    for _, dataset_cfg, entry_heads in test_dataset_entries(cfg):
        dataset = DATASETS.build(dataset_cfg)
        count = min(num, len(dataset))
        indices = np.linspace(0, len(dataset) - 1, num=count).round().astype(int)
        batch = collate_samples([dataset[int(i)] for i in indices])
        restrict = (
            model.active_heads(entry_heads) if entry_heads is not None else contextlib.nullcontext()
        )
        with torch.no_grad(), restrict:
            predictions = model.val_step(batch)
            heads = {name: model.head_tasks[name] for name in model.active_head_names}
        for image, prediction in zip(batch["inputs"], predictions, strict=True):
            tiles.append(draw_tile(image, prediction, dataset.metainfo, heads))
            if "pred_label" in prediction and prediction.get("gt_label") is not None:
                classified += 1
                correct += int(prediction["pred_label"] == prediction["gt_label"])
    return PredictionGrid(tile_grid(tiles, columns=columns), len(tiles), correct, classified)
