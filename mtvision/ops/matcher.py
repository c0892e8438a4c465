"""SSD matching: which ground-truth box, if any, each anchor has to predict."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["BACKGROUND", "SSDMatcher"]

BACKGROUND = -1


class SSDMatcher:
    """Assign every anchor a ground-truth index or ``BACKGROUND`` (-1).

    Two rules, as in SSD (and torchvision's ``SSDMatcher``, TF's ``ArgMaxMatcher``
    with ``force_match_for_each_row``):

    1. an anchor whose best IoU with any ground truth is ``>= iou_threshold`` is
       matched to that ground truth (the lowest index on ties);
    2. every ground truth is forced onto its own best anchor (the lowest anchor
       index on ties), even below the threshold, so no object goes untrained. When
       two ground truths share that best anchor, the higher ground-truth index
       keeps it (computed with a deterministic ``scatter_reduce``). A ground truth
       that overlaps no anchor at all (IoU 0 everywhere) is not forced.

    With no ground truth every anchor is background.

    Args:
        iou_threshold: IoU from which an anchor is positive (SSD: 0.5).
    """

    def __init__(self, iou_threshold: float = 0.5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold

    def __call__(self, gt_boxes: Tensor, anchors: Tensor) -> Tensor:
        """(M, 4) xyxy ground truths, (A, 4) xyxy anchors -> (A,) int64 ground-truth index or -1."""
        num_anchors = anchors.shape[0]
        matches = torch.full((num_anchors,), BACKGROUND, dtype=torch.int64, device=anchors.device)
        if gt_boxes.numel() == 0:
            return matches
        iou = box_iou(gt_boxes, anchors)  # (M, A)
        best_iou_per_anchor, best_gt_per_anchor = iou.max(dim=0)
        positive = best_iou_per_anchor >= self.iou_threshold
        matches[positive] = best_gt_per_anchor[positive]

        best_iou_per_gt, best_anchor_per_gt = iou.max(dim=1)
        gt_indices = torch.arange(gt_boxes.shape[0], device=anchors.device)
        overlapping = best_iou_per_gt > 0
        forced = torch.full_like(matches, BACKGROUND).scatter_reduce(
            0, best_anchor_per_gt[overlapping], gt_indices[overlapping], reduce="amax"
        )
        return torch.where(forced != BACKGROUND, forced, matches)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(iou_threshold={self.iou_threshold})"
