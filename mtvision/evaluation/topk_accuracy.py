"""Top-k classification accuracy as an mmengine metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mtvision.registry import METRICS


def gt_ranks(scores: torch.Tensor, gt_labels: torch.Tensor) -> torch.Tensor:
    """Position of each true class when its row's classes are sorted by descending score.

    Args:
        scores: (N, K) class scores.
        gt_labels: (N,) true class indices.

    Returns:
        (N,) int64 ranks; 0 means the true class is the top prediction. Ties are
        broken in favour of the lower class index, as a stable descending sort does.
    """
    gt_scores = scores.gather(1, gt_labels[:, None])
    classes = torch.arange(scores.shape[1], device=scores.device)
    higher = (scores > gt_scores).sum(dim=1)
    tied_before = ((scores == gt_scores) & (classes[None] < gt_labels[:, None])).sum(dim=1)
    return higher + tied_before


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Fraction of images whose true class is among the k highest scores.

    Each processed image is reduced to one integer (the rank of its true class),
    so gathering across processes is cheap and exact.

    Args:
        topk: the k values to report; each k is clipped to the number of classes.
        prefix: metric name prefix; keys are ``{prefix}/top{k}``.

    Reads ``pred_score`` (K,) and ``gt_label`` from each prediction dict.
    Returns fractions in [0, 1].
    """

    default_prefix = "accuracy"

    def __init__(
        self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not topk or any(k < 1 for k in topk):
            raise ValueError(f"topk values must be >= 1, got {topk}")
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for prediction in data_samples:
            if "gt_label" not in prediction:
                raise KeyError(
                    "TopKAccuracy needs 'gt_label' in every prediction "
                    f"(got keys {sorted(prediction)})"
                )
        if not data_samples:
            return
        scores = torch.stack([p["pred_score"].detach() for p in data_samples]).float().cpu()
        gt_labels = torch.as_tensor([int(p["gt_label"]) for p in data_samples])
        num_classes = scores.shape[1]
        self.results.extend((int(rank), num_classes) for rank in gt_ranks(scores, gt_labels))

    def compute_metrics(self, results: list) -> dict[str, float]:
        ranks = np.array([rank for rank, _ in results])
        num_classes = min(num for _, num in results)
        return {f"top{k}": float(np.mean(ranks < min(k, num_classes))) for k in self.topk}
