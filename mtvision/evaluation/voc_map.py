"""PASCAL VOC detection mAP (one IoU threshold, difficult objects ignored).

The VOC devkit's rules (``VOCevaldet.m`` / ``voc_eval.py``), as mmdet's
``eval_map`` implements them:

- per class, each detection (highest score first within an image) goes to the
  ground-truth box it overlaps most (the first of equal ones); IoU >=
  ``iou_threshold`` (``>=`` as in the MATLAB devkit) and that box not
  yet taken -> true positive; already taken or IoU too low -> false positive;
- a detection whose best box is *difficult* is neither: it is dropped, and
  difficult boxes do not count in the number of positives;
- detections of all images are then ranked by score into one precision/recall
  curve, and AP is its 11-point interpolation (VOC2007: mean over recall
  0, 0.1, ..., 1 of the best precision at that recall or more) or the area
  under its monotone envelope (VOC2010 onwards).

Box convention: boxes are xyxy in pixels with continuous coordinates, so a
box's width is ``x2 - x1`` and IoU has no "+1" (mmdet >= 2.x, torchvision).
:class:`~mtvision.data.voc_detection.VOCDetection` turns the XML's 1-based
inclusive pixel indices into such boxes (``x1 = xmin - 1``, ``x2 = xmax``), so
its boxes give exactly the devkit's IoUs here. ``legacy_coordinates=True`` is
for boxes that still hold inclusive indices: width ``x2 - x1 + 1``, the VOC
devkit's (and mmdet's ``use_legacy_coordinate``) formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from torchvision.ops import box_iou

from mtvision.registry import METRICS
from mtvision.utils.arrays import to_numpy

__all__ = ["VOCMeanAP", "average_precision", "match_detections", "voc_mean_ap"]

EvalMode = Literal["11points", "area"]


def average_precision(recall: np.ndarray, precision: np.ndarray, mode: EvalMode) -> float:
    """AP of one precision/recall curve (points in score order, recall non-decreasing).

    ``"11points"``: mean over t in {0, 0.1, ..., 1} of max(precision[recall >= t]),
    0 where recall never reaches t. ``"area"``: area under the curve after
    making precision monotonically non-increasing in recall.
    """
    if mode == "11points":
        total = 0.0
        # np.arange, as the VOC python devkit and mmdet: its 0.30000000000000004
        # (not 0.3) decides ties like recall == 3/10 the way their numbers do.
        for threshold in np.arange(0.0, 1.1, 0.1):
            reached = precision[recall >= threshold]
            total += float(reached.max()) if reached.size else 0.0
        return total / 11.0
    if mode == "area":
        recall = np.concatenate([[0.0], recall, [1.0]])
        precision = np.concatenate([[0.0], precision, [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.flatnonzero(recall[1:] != recall[:-1])
        return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))
    raise ValueError(f"eval_mode must be '11points' or 'area', got {mode!r}")


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    iou_threshold: float = 0.5,
    legacy_coordinates: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """True/false-positive flags of one image's detections of one class.

    Args:
        det_boxes: (K, 4) xyxy; det_scores: (K,).
        gt_boxes: (M, 4) xyxy; gt_difficult: (M,) bool.

    Returns:
        ``(tp, fp)``, each (K,) bool in the input order; a detection matched to
        a difficult box has both False.
    """
    num_dets = len(det_boxes)
    tp = np.zeros(num_dets, dtype=bool)
    fp = np.zeros(num_dets, dtype=bool)
    if num_dets == 0:
        return tp, fp
    if len(gt_boxes) == 0:
        fp[:] = True
        return tp, fp
    offset = 1.0 if legacy_coordinates else 0.0
    # Inclusive pixel indices are continuous boxes one pixel larger to the right and bottom.
    grow = torch.tensor([0.0, 0.0, offset, offset], dtype=torch.float64)
    ious = box_iou(
        torch.as_tensor(det_boxes, dtype=torch.float64) + grow,
        torch.as_tensor(gt_boxes, dtype=torch.float64) + grow,
    ).numpy()
    best_gt = ious.argmax(axis=1)
    best_iou = ious[np.arange(num_dets), best_gt]
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-det_scores, kind="stable"):
        g = best_gt[d]
        if best_iou[d] < iou_threshold:
            fp[d] = True
        elif gt_difficult[g]:
            continue
        elif not taken[g]:
            tp[d] = taken[g] = True
        else:
            fp[d] = True
    return tp, fp


def voc_mean_ap(
    results: Sequence[dict],
    num_classes: int,
    iou_threshold: float = 0.5,
    eval_mode: EvalMode = "11points",
    legacy_coordinates: bool = False,
) -> tuple[float, list[dict]]:
    """VOC mAP over images.

    Args:
        results: per image ``{"pred_boxes" (K,4), "pred_scores" (K,), "pred_labels" (K,),
            "gt_boxes" (M,4), "gt_labels" (M,), "gt_difficult" (M,) bool}``,
            boxes xyxy pixels, labels 0..num_classes-1.

    Returns:
        ``(mAP, per_class)``: the mean AP over classes that have at least one
        non-difficult ground-truth box (0.0 if none has), and per class a dict
        ``num_gts`` (non-difficult), ``num_dets``, ``recall`` (final), ``ap``
        (``nan`` for a class without ground truth).
    """
    per_class = []
    for c in range(num_classes):
        scores, tps, fps = [], [], []
        num_gts = 0
        for r in results:
            is_det, is_gt = r["pred_labels"] == c, r["gt_labels"] == c
            difficult = r["gt_difficult"][is_gt]
            num_gts += int((~difficult).sum())
            tp, fp = match_detections(
                r["pred_boxes"][is_det],
                r["pred_scores"][is_det],
                r["gt_boxes"][is_gt],
                difficult,
                iou_threshold,
                legacy_coordinates,
            )
            scores.append(r["pred_scores"][is_det])
            tps.append(tp)
            fps.append(fp)
        if results:
            scores, tp, fp = np.concatenate(scores), np.concatenate(tps), np.concatenate(fps)
        else:
            scores, tp, fp = np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
        order = np.argsort(-scores, kind="stable")
        tp, fp = tp[order], fp[order]
        # Detections matched to difficult boxes leave the curve (they would only
        # repeat the previous point).
        counted = tp | fp
        tp_cum, fp_cum = np.cumsum(tp[counted]), np.cumsum(fp[counted])
        if num_gts == 0:
            ap, final_recall = float("nan"), float("nan")
        else:
            recall = tp_cum / num_gts
            precision = tp_cum / (tp_cum + fp_cum)
            ap = average_precision(recall, precision, eval_mode)
            final_recall = float(recall[-1]) if recall.size else 0.0
        per_class.append(
            {"num_gts": num_gts, "num_dets": int(len(scores)), "recall": final_recall, "ap": ap}
        )
    aps = [c["ap"] for c in per_class if c["num_gts"] > 0]
    return (float(np.mean(aps)) if aps else 0.0), per_class


@METRICS.register_module()
class VOCMeanAP(BaseMetric):
    """PASCAL VOC box mAP at one IoU threshold, difficult objects ignored.

    Reads from each prediction: ``boxes`` (K, 4) xyxy original-image pixels,
    ``scores`` (K,), ``labels`` (K,) contiguous 0..C-1, and the ground truth
    ``meta["ann"] = {"boxes" (M, 4) xyxy original pixels, "labels" (M,),
    "difficult" (M,) bool}`` with every object, difficult ones included.

    Args:
        iou_threshold: IoU for a match (0.5 in VOC).
        eval_mode: ``"11points"`` (VOC2007 test protocol) or ``"area"`` (VOC2010+).
        legacy_coordinates: VOC devkit pixel convention (width = x2 - x1 + 1);
            see the module docstring.
        prefix: key prefix, default ``"pascal_voc"``.

    Returns (``compute_metrics``): ``{"mAP": float}`` in [0, 1], the mean AP of
    the classes that have non-difficult ground truth; the per-class AP table is
    logged. The number of classes is ``len(dataset_meta["classes"])``, or the
    largest label seen + 1 without dataset meta.
    """

    default_prefix = "pascal_voc"

    def __init__(
        self,
        iou_threshold: float = 0.5,
        eval_mode: EvalMode = "11points",
        legacy_coordinates: bool = False,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if eval_mode not in ("11points", "area"):
            raise ValueError(f"eval_mode must be '11points' or 'area', got {eval_mode!r}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.eval_mode = eval_mode
        self.legacy_coordinates = legacy_coordinates

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for prediction in data_samples:
            meta = prediction.get("meta", {})
            ann = meta.get("ann")
            if ann is None:
                raise KeyError(
                    "VOCMeanAP needs the ground truth in meta['ann'] (boxes, labels, difficult); "
                    f"got meta keys {sorted(meta)} for {meta.get('img_path', 'a prediction')}"
                )
            self.results.append(
                {
                    "pred_boxes": to_numpy(prediction["boxes"], np.float64).reshape(-1, 4),
                    "pred_scores": to_numpy(prediction["scores"], np.float64).reshape(-1),
                    "pred_labels": to_numpy(prediction["labels"], np.int64).reshape(-1),
                    "gt_boxes": to_numpy(ann["boxes"], np.float64).reshape(-1, 4),
                    "gt_labels": to_numpy(ann["labels"], np.int64).reshape(-1),
                    "gt_difficult": to_numpy(ann["difficult"], bool).reshape(-1),
                    "img_id": meta.get("img_id", meta.get("img_path")),
                }
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        classes = (self.dataset_meta or {}).get("classes")
        largest = max(
            (int(r[k].max()) for r in results for k in ("pred_labels", "gt_labels") if r[k].size),
            default=-1,
        )
        num_classes = len(classes) if classes is not None else largest + 1
        if largest >= num_classes:
            bad = next(
                r["img_id"]
                for r in results
                if any(
                    r[k].size and r[k].max() >= num_classes for k in ("pred_labels", "gt_labels")
                )
            )
            raise ValueError(
                f"image {bad}: label {largest} is out of range for {num_classes} classes"
            )
        mean_ap, per_class = voc_mean_ap(
            results, num_classes, self.iou_threshold, self.eval_mode, self.legacy_coordinates
        )
        names = list(classes) if classes is not None else [str(c) for c in range(num_classes)]
        print_log(self._table(names, per_class, mean_ap), logger="current")
        return {"mAP": mean_ap}

    def _table(self, names: list[str], per_class: list[dict], mean_ap: float) -> str:
        width = max([len("class"), *(len(str(n)) for n in names)])
        lines = [
            f"VOC AP@{self.iou_threshold:g} ({self.eval_mode}):",
            f"{'class':<{width}}  {'gts':>5}  {'dets':>6}  {'recall':>6}  {'ap':>6}",
        ]
        for name, c in zip(names, per_class, strict=True):
            recall = "-" if np.isnan(c["recall"]) else f"{c['recall']:.3f}"
            ap = "-" if np.isnan(c["ap"]) else f"{c['ap']:.3f}"
            lines.append(
                f"{name:<{width}}  {c['num_gts']:>5}  {c['num_dets']:>6}  {recall:>6}  {ap:>6}"
            )
        lines.append(f"{'mAP':<{width}}  {'':>5}  {'':>6}  {'':>6}  {mean_ap:>6.3f}")
        return "\n".join(lines)
