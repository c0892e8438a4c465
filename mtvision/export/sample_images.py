"""A few of a config's test images, as a deployed graph takes them (uint8, after the test
pipeline), to check an export against torch or to calibrate int8 quantisation."""

from __future__ import annotations

import numpy as np
import torch
from mmengine.registry import init_default_scope
from torch import Tensor

from mtvision.engine.config import test_dataset_entries
from mtvision.errors import AnnotationError, ConfigError, ImageLoadError
from mtvision.export.deploy_config import pipeline_output_size
from mtvision.registry import DATASETS


def test_images(
    cfg, count: int, input_size: tuple[int, int] | None, seed: int = 0
) -> tuple[list[Tensor], str]:
    """Up to ``count`` uint8 (3, H, W) images of the config's test set and where they
    come from (a description for messages).

    The images are evenly spaced over the first test dataloader whose pipeline gives
    ``input_size`` (any with ``None``). When no test set can be read (no data at
    its path), ``count`` random images of ``input_size`` (or 256x256) are returned
    instead, and the description says so.
    """
    for _, dataset_cfg, _ in test_dataset_entries(cfg):
        size = pipeline_output_size(dataset_cfg.get("pipeline"))
        if input_size is not None and size is not None and tuple(size) != tuple(input_size):
            continue
        init_default_scope(cfg.get("default_scope", "mtvision"))
        try:
            dataset = DATASETS.build(dataset_cfg)
        except (FileNotFoundError, AnnotationError, ImageLoadError, ConfigError, OSError):
            continue
        if len(dataset) == 0:
            continue
        indices = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
        images = [dataset[int(i)]["inputs"] for i in dict.fromkeys(indices.tolist())]
        if input_size is not None and any(
            tuple(im.shape[-2:]) != tuple(input_size) for im in images
        ):
            continue
        return images, f"test images of {dataset_cfg.get('data_root', 'the config')}"
    generator = torch.Generator().manual_seed(seed)
    height, width = input_size or (256, 256)
    images = [
        torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        for _ in range(count)
    ]
    return images, "random images (the config's test set could not be read)"
