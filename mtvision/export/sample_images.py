"""A few of a config's test images, as a deployed graph takes them (uint8, after the test
pipeline), to check an export against torch (:func:`test_images`) or to calibrate int8
quantisation (:func:`calibration_datasets`, :func:`draw_samples`,
:func:`calibration_batches`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from torch import Tensor

from mtvision.engine.model_source import pipeline_output_size, test_dataset_entries
from mtvision.errors import AnnotationError, ConfigError, ImageLoadError
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


def calibration_datasets(cfg) -> list[tuple[str, object]]:
    """``[(description, dataset), ...]`` of the config's test data: one dataset, or one
    per entry of a multi-task config's ``test_dataloader`` (every image of each is a
    calibration candidate)."""
    init_default_scope(cfg.get("default_scope", "mtvision"))
    datasets = []
    for name, dataset_cfg, _ in test_dataset_entries(cfg):
        dataset = DATASETS.build(_unserialized(dataset_cfg))
        kind = type(dataset).__name__
        root = getattr(dataset, "data_root", None)
        where = f"{kind} at {root}" if root else kind
        datasets.append((f"test entry {name!r} ({where})" if name else where, dataset))
    return datasets


def _unserialized(config: dict) -> dict:
    """mmengine's ``serialize_data`` off: calibration reads in this process, and
    serialising an empty data list fails with a bare numpy error instead of the
    "no images" message."""
    from mmengine.dataset import BaseDataset as MMEngineBaseDataset

    kind = config.get("type")
    kind = DATASETS.get(kind) if isinstance(kind, str) else kind
    if isinstance(kind, type) and issubclass(kind, MMEngineBaseDataset):
        return {**config, "serialize_data": False}
    return config


def draw_samples(sizes: Sequence[int], count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` distinct ``(dataset index, sample index)`` pairs drawn uniformly from
    all samples of datasets of ``sizes`` (without replacement; all when fewer)."""
    total = sum(sizes)
    picks = np.random.default_rng(seed).permutation(total)[: min(count, total)]
    offsets = np.cumsum([0, *sizes])
    which = np.searchsorted(offsets, picks, side="right") - 1
    return [(int(d), int(p - offsets[d])) for d, p in zip(which, picks, strict=True)]


def calibration_batches(
    datasets: Sequence,
    picks: Sequence[tuple[int, int]],
    size: tuple[int, int] | None,
    batch_size: int,
    resized: list,
) -> Iterator[Tensor]:
    """uint8 (B, 3, H, W) batches of the picked samples through their test pipelines;
    ``size`` None: one image per batch at its own size. Images whose pipeline output
    differs from ``size`` are resized (bilinear, antialiased) and their pipeline size
    appended to ``resized``."""
    batch = []
    for dataset_index, sample_index in picks:
        image = datasets[dataset_index][sample_index]["inputs"]
        if size is not None and tuple(image.shape[-2:]) != tuple(size):
            resized.append(tuple(image.shape[-2:]))
            image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)
            image = image[0].round().clamp(0, 255).to(torch.uint8)
        batch.append(image)
        if size is None or len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)
