"""How closely a deployed graph's outputs follow the torch model's: one number per head.

Used by ``tools/export_onnx.py`` after writing a file, by the tests and by the
benchmark. Detections are compared as sets (onnxruntime's NMS may order equal
scores differently from torchvision's), classification as top-k scores, and
segmentation as the share of equal pixels.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.ops import box_iou


def detection_agreement(
    expected: dict[str, Tensor],
    actual: dict[str, Tensor],
    iou_threshold: float = 0.99,
    score_tolerance: float = 1e-4,
) -> float:
    """Share of ``expected``'s detections (padded ``boxes``/``scores``/``labels``/
    ``num_detections``, as :meth:`SSDLiteHead.postprocess` returns them) that ``actual``
    has too: same label, IoU >= ``iou_threshold``, score within ``score_tolerance``.

    Where an image's list is full (``max_detections`` reached), detections scoring
    within ``score_tolerance`` of its last one are left out on both sides: which of
    near-equal scores makes the cut is a tie. Returns 1.0 when there is nothing to
    compare.
    """
    matched = total = 0
    max_detections = expected["scores"].shape[1]
    for index in range(expected["scores"].shape[0]):
        want = _detections(expected, index, max_detections, score_tolerance)
        got = _detections(actual, index, max_detections, score_tolerance)
        total += len(want[1])
        if not len(want[1]) or not len(got[1]):
            continue
        iou = box_iou(want[0].double(), got[0].double())
        same = (want[2].unsqueeze(1) == got[2].unsqueeze(0)) & (iou >= iou_threshold)
        close = (want[1].unsqueeze(1) - got[1].unsqueeze(0)).abs() <= score_tolerance
        matched += int((same & close).any(dim=1).sum())
    return 1.0 if total == 0 else matched / total


def _detections(results: dict[str, Tensor], index: int, max_detections: int, tolerance: float):
    count = int(results["num_detections"][index])
    boxes = results["boxes"][index, :count]
    scores = results["scores"][index, :count].double()
    labels = results["labels"][index, :count]
    if count >= max_detections and count:
        keep = scores > scores[-1] + tolerance
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    return boxes, scores, labels


def head_agreement(task: str, expected: dict[str, Tensor], actual: dict[str, Tensor]) -> float:
    """One agreement number for a head's deployed outputs (see the module docstring):

    - classification: share of images whose top-1 label is the same;
    - detection: :func:`detection_agreement`;
    - segmentation: share of pixels with the same class.
    """
    if task == "classification":
        return float((expected["labels"][:, 0] == actual["labels"][:, 0]).double().mean())
    if task == "detection":
        return detection_agreement(expected, actual)
    return float((expected["mask"] == actual["mask"]).double().mean())


def max_score_difference(
    task: str, expected: dict[str, Tensor], actual: dict[str, Tensor]
) -> float:
    """Largest |score difference| of a classification head's top-k (0 for other tasks)."""
    if task != "classification":
        return 0.0
    return float((expected["scores"].double() - actual["scores"].double()).abs().max())
