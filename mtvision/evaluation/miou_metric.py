"""Semantic segmentation mIoU, pixel accuracy and mean class accuracy as an mmengine metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mtvision.registry import METRICS

__all__ = ["MeanIoU", "confusion_matrix", "scores_from_confusion"]


def confusion_matrix(
    pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """Pixel counts of (true class, predicted class) pairs.

    Args:
        pred: (H, W) integer predicted class indices in 0..num_classes-1.
        gt: (H, W) integer true class indices; pixels equal to ``ignore_index``
            are not counted.

    Returns:
        (num_classes, num_classes) int64 tensor on ``pred``'s device;
        ``[i, j]`` = number of pixels of true class i predicted as j.
    """
    valid = gt != ignore_index
    gt = gt[valid].long()
    pred = pred[valid].long()
    return torch.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def scores_from_confusion(matrix: np.ndarray) -> dict[str, np.ndarray | float]:
    """IoU and accuracy per class, their means, and pixel accuracy from a confusion matrix.

    ``matrix[i, j]`` counts pixels of true class i predicted as j. Per class c
    with TP = ``matrix[c, c]``:

    - ``IoU[c] = TP / (pixels of c in gt + pixels predicted as c - TP)``;
      NaN when c is absent from both ground truth and prediction (undefined),
      0 when c is predicted but absent from the ground truth;
    - ``Acc[c] = TP / pixels of c in gt``; NaN when c is absent from gt;
    - ``mIoU`` / ``mAcc``: means over the classes where they are defined
      (mmseg's convention: undefined classes are left out, not counted as 0);
    - ``aAcc``: correctly predicted pixels / all counted pixels.

    All values are fractions in [0, 1].
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    gt_pixels = matrix.sum(axis=1)
    pred_pixels = matrix.sum(axis=0)
    union = gt_pixels + pred_pixels - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        accuracy = np.where(gt_pixels > 0, true_positive / gt_pixels, np.nan)
    return {
        "IoU": iou,
        "Acc": accuracy,
        "mIoU": float(np.nanmean(iou)),
        "mAcc": float(np.nanmean(accuracy)),
        "aAcc": float(true_positive.sum() / matrix.sum()),
    }


@METRICS.register_module()
class MeanIoU(BaseMetric):
    """Mean intersection over union from a streaming confusion matrix.

    ``process`` reduces every image to one (C, C) int64 confusion matrix
    (``[true, predicted]`` pixel counts, ``ignore_index`` pixels left out), so
    no mask is kept; ``compute_metrics`` sums them. One matrix per image
    rather than per batch: over several processes mmengine's sampler repeats
    a few images to even out the shards, and ``collect_results`` drops the
    repeats by cutting the gathered list to the dataset length, which needs
    one result per image.

    Returns fractions in [0, 1] (like :class:`TopKAccuracy`; mmseg reports
    percent): ``mIoU``, ``mAcc`` (mean class accuracy) and ``aAcc`` (pixel
    accuracy), under ``{prefix}/``. A class absent from both ground truth and
    prediction has an undefined IoU (NaN) and is left out of the mean, as in
    mmseg; a class predicted but absent from the ground truth has IoU 0. The
    per-class IoU and accuracy are logged as a table.

    Reads ``pred_mask`` (H, W) integer class indices and ``gt_mask`` (H, W),
    255 = ignore, from each prediction dict; ``meta["img_path"]`` names the
    image in errors.

    Args:
        num_classes: number of classes C; ``None`` takes the length of the
            dataset's ``metainfo["classes"]`` (mmengine sets ``dataset_meta``).
        ignore_index: ground-truth value of pixels that are not evaluated.
        prefix: metric name prefix; keys are ``{prefix}/mIoU`` etc.
    """

    default_prefix = "seg"

    def __init__(
        self,
        num_classes: int | None = None,
        ignore_index: int = 255,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"MeanIoU: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    @property
    def class_names(self) -> tuple[str, ...] | None:
        classes = (self.dataset_meta or {}).get("classes")
        return None if classes is None else tuple(classes)

    def _num_classes(self) -> int:
        names = self.class_names
        if self.num_classes is not None:
            if names is not None and len(names) != self.num_classes:
                raise ValueError(
                    f"MeanIoU: num_classes={self.num_classes} but the dataset has "
                    f"{len(names)} classes {names}"
                )
            return self.num_classes
        if names is None:
            raise ValueError(
                "MeanIoU: set num_classes, or evaluate a dataset whose metainfo has 'classes'"
            )
        return len(names)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        num_classes = self._num_classes()
        for prediction in data_samples:
            source = prediction.get("meta", {}).get("img_path", "<unknown image>")
            missing = [key for key in ("pred_mask", "gt_mask") if key not in prediction]
            if missing:
                raise KeyError(
                    f"MeanIoU: the prediction for {source} has no {', '.join(missing)} "
                    f"(keys {sorted(prediction)})"
                )
            pred = torch.as_tensor(prediction["pred_mask"]).detach()
            gt = torch.as_tensor(prediction["gt_mask"]).detach().to(pred.device)
            if pred.shape != gt.shape:
                raise ValueError(
                    f"MeanIoU: {source}: predicted mask shape {tuple(pred.shape)} differs from "
                    f"the ground-truth mask shape {tuple(gt.shape)}; evaluate at the original "
                    "image size (no resize in the test pipeline)"
                )
            self._check_values(pred, gt, num_classes, source)
            matrix = confusion_matrix(pred, gt, num_classes, self.ignore_index)
            self.results.append(matrix.cpu())

    def _check_values(
        self, pred: torch.Tensor, gt: torch.Tensor, num_classes: int, source: str
    ) -> None:
        bad_pred = pred[(pred < 0) | (pred >= num_classes)]
        if bad_pred.numel():
            raise ValueError(
                f"MeanIoU: {source}: predicted class indices {bad_pred.unique()[:10].tolist()} "
                f"are outside 0..{num_classes - 1}"
            )
        gt_valid = gt != self.ignore_index
        bad_gt = gt[gt_valid & ((gt < 0) | (gt >= num_classes))]
        if bad_gt.numel():
            raise ValueError(
                f"MeanIoU: {source}: ground-truth values {bad_gt.unique()[:10].tolist()} are "
                f"neither a class index (0..{num_classes - 1}) nor {self.ignore_index}"
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            raise ValueError("MeanIoU: no image was evaluated")
        matrix = torch.stack([torch.as_tensor(m) for m in results]).sum(dim=0).numpy()
        if matrix.sum() == 0:
            raise ValueError(
                f"MeanIoU: the {len(results)} evaluated images have no labelled pixel "
                f"(all are {self.ignore_index} = ignore)"
            )
        scores = scores_from_confusion(matrix)
        print_log("\n" + self._per_class_table(scores["IoU"], scores["Acc"]), logger="current")
        return {key: scores[key] for key in ("mIoU", "mAcc", "aAcc")}

    def _per_class_table(self, iou: np.ndarray, accuracy: np.ndarray) -> str:
        names = self.class_names or tuple(str(i) for i in range(len(iou)))
        width = max(len("class"), *(len(name) for name in names))
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
        lines += [
            f"{name:<{width}}  {i:>6.4f}  {a:>6.4f}"
            for name, i, a in zip(names, iou, accuracy, strict=True)
        ]
        return "\n".join(lines)
