"""Batch preparation on the model's device: cast, normalise, stack/pad, memory format."""

from __future__ import annotations

import torch
from mmengine.model import ImgDataPreprocessor

from mtvision.data.normalization import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from mtvision.registry import MODELS


@MODELS.register_module()
class DataPreprocessor(ImgDataPreprocessor):
    """mmengine's :class:`ImgDataPreprocessor` plus an optional channels-last layout.

    Input: ``{"inputs": list of (3, H, W) uint8 tensors, "data_samples": list of dicts}``
    as produced by ``collate_samples``. Output: ``{"inputs": (N, 3, H', W') float32
    normalised with ImageNet mean/std in RGB 0-255 units, padded to the largest
    image (and to ``pad_size_divisor``), "data_samples": same list moved to the
    device}``. The pipeline stays uint8 so the copy to the device is 4x smaller.

    Args:
        channels_last: return inputs in ``torch.channels_last`` memory format;
            depthwise-heavy networks train ~1.5x faster this way on CPU.
    """

    def __init__(
        self,
        mean=IMAGENET_MEAN_RGB,
        std=IMAGENET_STD_RGB,
        pad_size_divisor: int = 1,
        pad_value: float = 0,
        channels_last: bool = False,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            non_blocking=non_blocking,
        )
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if self.channels_last:
            data["inputs"] = data["inputs"].contiguous(memory_format=torch.channels_last)
        return data


def build_data_preprocessor(cfg: dict | torch.nn.Module | None) -> torch.nn.Module:
    """The preprocessor every mtvision model uses: ``None`` means ``DataPreprocessor()``.

    Config dicts are built from mtvision's registry, so they resolve without
    mmengine's default scope (e.g. under ``mtvision.create_model`` outside a Runner).
    """
    if cfg is None:
        cfg = dict(type="DataPreprocessor")
    return MODELS.build(cfg) if isinstance(cfg, dict) else cfg
