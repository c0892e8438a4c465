"""Pixel normalisation constants, RGB in 0-255 units: ``x_normalised = (x - mean) / std``.

- ImageNet statistics, torchvision's (and mmpretrain's) convention for models
  trained from scratch or from torchvision weights.
- "Inception" scaling to [-1, 1], ``x / 127.5 - 1``: TF-slim's and TF-DeepLab's
  preprocessing, which Google's TF and TFLite MobileNetV2 / DeepLab weights expect
  (timm: ``IMAGENET_INCEPTION_MEAN``).
"""

from __future__ import annotations

__all__ = ["IMAGENET_MEAN_RGB", "IMAGENET_STD_RGB", "INCEPTION_MEAN_RGB", "INCEPTION_STD_RGB"]

#: ImageNet per-channel mean, RGB, 0-255 (torchvision's 0.485, 0.456, 0.406 x 255).
IMAGENET_MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)
#: ImageNet per-channel standard deviation, RGB, 0-255 (0.229, 0.224, 0.225 x 255).
IMAGENET_STD_RGB: tuple[float, float, float] = (58.395, 57.12, 57.375)
#: TF-slim / TF-DeepLab: ``(x - 127.5) / 127.5``, RGB, 0-255.
INCEPTION_MEAN_RGB: tuple[float, float, float] = (127.5, 127.5, 127.5)
INCEPTION_STD_RGB: tuple[float, float, float] = (127.5, 127.5, 127.5)
