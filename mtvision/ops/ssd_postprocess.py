"""SSD post-processing of raw outputs: box decoding, per-class top-k, class-aware NMS,
padded detections.

One function for every place that turns an SSD head's raw outputs into detections:
:meth:`SSDLiteHead.postprocess <mtvision.heads.SSDLiteHead.postprocess>` (torch and the
ONNX graph, where it exports as ``NonMaxSuppression``) and the deployed files of
runtimes without an NMS op (LiteRT, ExecuTorch), whose raw outputs are decoded with
the anchors recorded in their metadata (:mod:`mtvision.tasks.detection`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torchvision.ops import clip_boxes_to_image

from mtvision.ops.box_coder import BoxCoder
from mtvision.ops.nms import class_aware_nms

__all__ = ["decode_detections"]


def decode_detections(
    scores: Tensor,
    box_regression: Tensor,
    anchors: Tensor,
    box_coder: BoxCoder,
    input_size: tuple[int, int],
    test_cfg: Mapping,
) -> dict[str, Tensor]:
    """SSD post-processing: decode, clip, per-class top-k, class-aware NMS, pad.

    Args:
        scores: (N, A, C) class probabilities of the A anchors (no background column).
        box_regression: (N, A, 4) box codes.
        anchors: (A, 4) xyxy anchors in input pixels.
        box_coder: the :class:`~mtvision.ops.BoxCoder` the codes were trained with.
        input_size: (H, W) of the input, for clipping.
        test_cfg: ``score_threshold``, ``nms_iou_threshold``, ``topk_candidates``,
            ``max_detections``.

    Returns, with D = ``max_detections``, detections sorted by score within each image::

        {"boxes": (N, D, 4) float32 xyxy input pixels, "scores": (N, D) float32,
         "labels": (N, D) int64, "num_detections": (N,) int64}

    Entries at and after ``num_detections[i]`` are padding (boxes and scores 0,
    labels -1). Tensor operations on the whole batch (no per-image loop), so the same
    code runs in torch and exports as ONNX ``NonMaxSuppression``.
    """
    cfg = test_cfg
    boxes = box_coder.decode(box_regression.float(), anchors)
    boxes = clip_boxes_to_image(boxes, tuple(int(v) for v in input_size))
    scores = scores.float()
    batch_size, num_anchors, num_classes = scores.shape
    device = scores.device

    # Per image and class only the top-k anchors stay candidates (scores of the others
    # set to 0, below any threshold), so NMS sees the boxes it would see after a gather
    # and the same code runs in torch and as ONNX NonMaxSuppression.
    scores = scores.transpose(1, 2)  # (N, C, A)
    topk = cfg["topk_candidates"]
    if topk is not None and topk < num_anchors:
        kth_score = scores.topk(topk, dim=2).values[..., -1:]
        scores = torch.where(scores >= kth_score, scores, torch.zeros_like(scores))
    selected = class_aware_nms(boxes, scores, cfg["nms_iou_threshold"], cfg["score_threshold"])
    kept_images, class_ids, anchor_ids = selected.unbind(1)
    candidate_scores = scores[kept_images, class_ids, anchor_ids]
    order = candidate_scores.argsort(descending=True)
    kept_images, class_ids = kept_images[order], class_ids[order]
    candidate_scores, candidate_boxes = (
        candidate_scores[order],
        boxes[kept_images, anchor_ids[order]],
    )
    # Each detection's rank within its own image (detections are sorted by score).
    in_image = kept_images.unsqueeze(1) == torch.arange(batch_size, device=device)
    rank = (in_image.long().cumsum(dim=0) * in_image).sum(dim=1) - 1
    selected = rank < cfg["max_detections"]
    kept_images, rank = kept_images[selected], rank[selected]

    max_detections = cfg["max_detections"]
    results = {
        "boxes": boxes.new_zeros(batch_size, max_detections, 4),
        "scores": scores.new_zeros(batch_size, max_detections),
        "labels": torch.full((batch_size, max_detections), -1, dtype=torch.int64, device=device),
        "num_detections": (in_image[selected].long()).sum(dim=0),
    }
    results["boxes"][kept_images, rank] = candidate_boxes[selected]
    results["scores"][kept_images, rank] = candidate_scores[selected]
    results["labels"][kept_images, rank] = class_ids[selected]
    return results
