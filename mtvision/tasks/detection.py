"""Detection heads' adapter: padded detections -> boxes in original pixels, results,
pictures, deployed outputs and their agreement.

Prediction fields (:class:`~mtvision.heads.SSDLiteHead`): ``boxes`` (K, 4) float32
xyxy in pixels of the original image, ``scores`` (K,), ``labels`` (K,) int64.
Deployed outputs (and ``postprocess``): ``boxes`` (N, D, 4) xyxy input pixels,
``scores`` (N, D), ``labels`` (N, D) (-1 = padding), ``num_detections`` (N,).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou, clip_boxes_to_image

from mtvision.ops.box_coder import BoxCoder
from mtvision.ops.ssd_postprocess import decode_detections
from mtvision.tasks.base import HeadInfo, Task, register_task
from mtvision.utils.arrays import to_numpy
from mtvision.visualization.draw import draw_detections

__all__ = ["DETECTION", "Detection", "detection_agreement", "detections_to_original"]

#: A phone graph's box-code order -> the indices that give mtvision's (tx, ty, tw, th).
_CODE_ORDERS = {"yxhw": [1, 0, 3, 2], "xywh": [0, 1, 2, 3]}


class Detection(Task):
    """Results: ``{"boxes": [[x1, y1, x2, y2], ...] (xyxy, pixels of the original
    image), "scores": [...], "labels": [...], "label_names": [...]}``, the detections
    scoring at least ``score_threshold``, best first. Pictures: boxes with class
    names and scores. Agreement: :func:`detection_agreement`."""

    name = "detection"
    fields = ("boxes", "scores", "labels")
    draw_order = 1
    # Agreement matches boxes at IoU >= 0.99 and scores within 1e-4: a float check. int8
    # moves every box and score by more, so an int8 file is not gated by it by default
    # (its accuracy is measured with tools/eval.py, as for ONNX int8).
    int8_min_agreement = 0.0

    def deploy_options(
        self, topk: int, seg_logits: bool, phone: bool = False, class_map: bool = False
    ) -> dict:
        """``phone``: the raw SSD outputs (no NMS op in the phone runtimes)."""
        return {"nms": not phone}

    def deploy_metadata(
        self, head, topk: int, phone: bool = False, input_size: tuple[int, int] | None = None
    ) -> dict:
        """For a ``phone`` graph what decoding its raw outputs needs: ``anchors`` (A, 4)
        xyxy input pixels, ``box_coder_weights`` (wx, wy, ww, wh), ``box_code_order``
        (``"yxhw"``: the codes' order in ``box_regression``), ``score_activation``
        (``"softmax"`` with the background column dropped, or ``"sigmoid"``) and the
        head's ``test_cfg`` (thresholds, top-k candidates, ``max_detections``)."""
        if not phone:
            return {}
        if input_size is None:
            raise ValueError("a phone graph's detection metadata needs the input size")
        cfg = head.test_cfg
        return {
            "anchors": head.anchors(tuple(input_size)).tolist(),
            "box_coder_weights": [float(w) for w in head.box_coder.weights],
            "box_code_order": "yxhw",
            "score_activation": "softmax" if head.cls_loss == "softmax" else "sigmoid",
            "test_cfg": {
                "score_threshold": float(cfg["score_threshold"]),
                "nms_iou_threshold": float(cfg["nms_iou_threshold"]),
                "topk_candidates": None
                if cfg["topk_candidates"] is None
                else int(cfg["topk_candidates"]),
                "max_detections": int(cfg["max_detections"]),
            },
        }

    def finish_phone_outputs(
        self, outputs: Mapping[str, Tensor], info: Mapping, input_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Raw ``anchor_scores`` (N, A, C) and ``box_regression`` (N, A, 4, in the order
        ``info["box_code_order"]`` names) -> the padded detections of
        :func:`~mtvision.ops.decode_detections` with the recorded anchors, box coder and
        ``test_cfg`` (the torch head's own post-processing).

        Raises:
            ValueError: an unknown ``box_code_order``, or not one anchor per prediction.
        """
        anchors = torch.tensor(info["anchors"], dtype=torch.float32)
        codes = torch.as_tensor(outputs["box_regression"]).float()
        if codes.shape[-2] != anchors.shape[0]:
            raise ValueError(
                f"the file's box_regression has {codes.shape[-2]} boxes per image but its "
                f"metadata records {anchors.shape[0]} anchors"
            )
        order = info.get("box_code_order", "yxhw")
        if order not in _CODE_ORDERS:
            raise ValueError(f"unknown box_code_order {order!r}; known: {sorted(_CODE_ORDERS)}")
        return decode_detections(
            torch.as_tensor(outputs["anchor_scores"]).float(),
            codes[..., _CODE_ORDERS[order]],
            anchors,
            BoxCoder(tuple(info["box_coder_weights"])),
            tuple(int(v) for v in input_size),
            info["test_cfg"],
        )

    def from_deployed(
        self, outputs: Mapping[str, Tensor], samples: Sequence[dict], info: Mapping
    ) -> list[dict]:
        return detections_to_original(outputs, samples)

    def agreement(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> float:
        return detection_agreement(expected, actual)

    def to_deployed(self, prediction: Mapping, topk: int = 5) -> dict[str, Tensor]:
        """The D detections padded to nothing: ``boxes`` (1, D, 4), ``scores`` and
        ``labels`` (1, D), ``num_detections`` (1,) = D."""
        boxes = torch.as_tensor(prediction["boxes"])
        return {
            "boxes": boxes[None],
            "scores": torch.as_tensor(prediction["scores"])[None],
            "labels": torch.as_tensor(prediction["labels"])[None],
            "num_detections": torch.tensor([len(boxes)]),
        }

    def summary(self, outputs: Mapping[str, Tensor]) -> str:
        """``"12 boxes"``."""
        return f"{int(outputs['num_detections'][0])} boxes"

    def comparison(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> str:
        """The counts, and for each of ``expected``'s boxes the best IoU with one of
        ``actual``'s of its class (min and median over the boxes)."""
        want = _detections(expected, 0, None, 0.0)
        got = _detections(actual, 0, None, 0.0)
        counts = f"{len(want[0])} vs {len(got[0])} boxes"
        if len(want[0]) == 0 or len(got[0]) == 0:
            return counts
        iou = box_iou(torch.as_tensor(want[0]), torch.as_tensor(got[0]))
        same_class = torch.as_tensor(want[2])[:, None] == torch.as_tensor(got[2])[None]
        # A box clipped to zero area has IoU 0/0 with itself: count it as not matched.
        best = (iou.nan_to_num(0.0) * same_class).max(dim=1).values
        return (
            f"{counts}, best same-class IoU min {float(best.min()):.3f} "
            f"median {float(best.median()):.3f}"
        )

    def result(
        self, prediction: Mapping, head: HeadInfo, topk: int = 5, score_threshold: float = 0.0
    ) -> dict:
        scores = to_numpy(prediction["scores"], np.float32).reshape(-1)
        keep = np.flatnonzero(scores >= score_threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        boxes = to_numpy(prediction["boxes"], np.float32).reshape(-1, 4)[keep]
        labels = [int(label) for label in to_numpy(prediction["labels"]).reshape(-1)[keep]]
        return {
            "boxes": boxes.tolist(),
            "scores": scores[keep].tolist(),
            "labels": labels,
            "label_names": [head.label_name(label) for label in labels],
        }

    def scaled(self, prediction: Mapping, scale_x: float, scale_y: float, size) -> dict:
        prediction = dict(prediction)
        scale = np.array([scale_x, scale_y] * 2)
        prediction["boxes"] = to_numpy(prediction["boxes"], np.float64).reshape(-1, 4) * scale
        return prediction

    def draw(self, picture: np.ndarray, prediction: Mapping, head: HeadInfo, options):
        return draw_detections(
            picture,
            to_numpy(prediction["boxes"]),
            to_numpy(prediction["labels"]),
            to_numpy(prediction["scores"]),
            head.classes,
            options.score_threshold,
        )

    def draw_result(
        self, picture: np.ndarray, result: Mapping, head: HeadInfo, options, scale: float = 1.0
    ):
        boxes = np.asarray(result["boxes"], np.float64).reshape(-1, 4)
        return draw_detections(
            picture,
            boxes * scale,
            np.asarray(result["labels"], np.int64),
            np.asarray(result["scores"], np.float64),
            head.classes,
            options.score_threshold,
        )


DETECTION = register_task(Detection())


def detections_to_original(results: dict[str, Tensor], data_samples: Sequence[dict]) -> list[dict]:
    """Per image the first ``num_detections`` of padded detections (``boxes`` (N, D, 4) xyxy
    input pixels, ``scores``, ``labels``), boxes clipped to ``meta["img_shape"]`` and scaled
    to ``meta["ori_shape"]`` (without a meta, boxes stay in input pixels)."""
    predictions = []
    counts = results["num_detections"].tolist()
    for index, (count, sample) in enumerate(zip(counts, data_samples, strict=True)):
        boxes = results["boxes"][index, :count]
        meta = sample.get("meta")
        if meta is not None and "img_shape" in meta:
            img_shape = tuple(int(v) for v in meta["img_shape"])
            ori_shape = tuple(int(v) for v in meta.get("ori_shape", img_shape))
            boxes = clip_boxes_to_image(boxes, img_shape)
            scale_y = ori_shape[0] / img_shape[0]
            scale_x = ori_shape[1] / img_shape[1]
            boxes = boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
        predictions.append(
            {
                "boxes": boxes,
                "scores": results["scores"][index, :count],
                "labels": results["labels"][index, :count],
            }
        )
    return predictions


def detection_agreement(
    expected: Mapping[str, Tensor],
    actual: Mapping[str, Tensor],
    iou_threshold: float = 0.99,
    score_tolerance: float = 1e-4,
) -> float:
    """Share of ``expected``'s detections (padded ``boxes``/``scores``/``labels``/
    ``num_detections``, as :meth:`SSDLiteHead.postprocess` returns them) that ``actual``
    has too: same label, IoU >= ``iou_threshold``, score within ``score_tolerance``.
    Detections are compared as sets (onnxruntime's NMS may order equal scores
    differently from torchvision's).

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


def _detections(
    results: Mapping[str, Tensor], index: int, max_detections: int | None, tolerance: float
):
    """Image ``index``'s (boxes, float64 scores, labels); with ``max_detections``, a full
    list loses the detections tied (within ``tolerance``) with its last one."""
    count = int(results["num_detections"][index])
    boxes = results["boxes"][index, :count]
    scores = results["scores"][index, :count].double()
    labels = results["labels"][index, :count]
    if max_detections is not None and count >= max_detections and count:
        keep = scores > scores[-1] + tolerance
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    return boxes, scores, labels
