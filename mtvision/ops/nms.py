"""Class-aware non-maximum suppression that runs in torch and exports as ONNX ``NonMaxSuppression``.

The eager forward is torchvision's ``batched_nms`` over every (image, class)
candidate above the score threshold; the ONNX graph is one
``NonMaxSuppression`` node (opset >= 11), which does the same per image and
per class on boxes shared by all classes. The same call therefore drives the
detector's post-processing in PyTorch and inside an exported graph (the
pattern of mmdeploy's ``multiclass_nms`` rewriter, without its dependency).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

#: ONNX NonMaxSuppression's ``max_output_boxes_per_class``: no limit (the candidates
#: are already cut to the top-k per class before NMS).
_NO_LIMIT = 2**31 - 1


class _ClassAwareNMS(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float):
        num_classes = scores.shape[1]
        candidates = torch.nonzero(scores > score_threshold)
        image_ids, class_ids, anchor_ids = candidates.unbind(1)
        kept = batched_nms(
            boxes[image_ids, anchor_ids].float(),
            scores[image_ids, class_ids, anchor_ids].float(),
            image_ids * num_classes + class_ids,
            iou_threshold,
        )
        return candidates[kept]

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, score_threshold: float):
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([_NO_LIMIT], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
            center_point_box_i=0,
        )


def class_aware_nms(
    boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float
) -> Tensor:
    """Indices of the boxes kept by per-image, per-class NMS.

    Args:
        boxes: (N, A, 4) float xyxy, shared by all classes (SSD's decoded anchors).
        scores: (N, C, A) float; only entries above ``score_threshold`` are candidates.
        iou_threshold: a box is dropped when its IoU with a higher-scoring kept box
            of the same image and class exceeds this.
        score_threshold: candidates score strictly more.

    Returns:
        (K, 3) int64 rows ``(image, class, anchor)``. In eager mode they are sorted by
        score, highest first; onnxruntime returns them grouped by image and class, so
        callers sort by score themselves when order matters.
    """
    if torch.onnx.is_in_onnx_export():
        return _ClassAwareNMS.apply(boxes, scores, float(iou_threshold), float(score_threshold))
    return _ClassAwareNMS.forward(None, boxes, scores, float(iou_threshold), float(score_threshold))
