"""Conversions between tensors and numpy arrays at the edges (metrics, pictures, files)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_numpy"]


def to_numpy(value, dtype=None) -> np.ndarray:
    """A numpy array of ``value`` (tensor on any device, array, list, number), optionally cast."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)
