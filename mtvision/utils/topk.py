"""The two directions between a class-score vector and its top-k: ranking the scores, and
spreading k (label, score) pairs back into a vector (zeros elsewhere)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["scores_from_top_k", "top_k"]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest of the (C,) ``scores``, best first (at most C; equal
    scores keep their label order)."""
    scores = np.asarray(scores).reshape(-1)
    return np.argsort(-scores, kind="stable")[: max(0, min(int(k), scores.size))]


def scores_from_top_k(labels: Tensor, scores: Tensor, num_classes: int) -> Tensor:
    """(N, C) float32 score vectors holding the (N, k) ``scores`` at their ``labels``, 0
    elsewhere (what a deployed graph's top-k says about the whole vector)."""
    vectors = torch.zeros(len(labels), int(num_classes))
    return vectors.scatter_(1, labels.long(), scores.float())
