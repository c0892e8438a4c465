"""Classification heads' adapter: class scores -> top-k results, captions, deployed top-k.

Prediction fields (:class:`~mtvision.heads.ClassifierHead`): ``pred_score`` (K,)
softmax probabilities, ``pred_label`` int, ``gt_label`` when known. Deployed
outputs: ``scores`` (N, k) float32 best first and ``labels`` (N, k) int64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from mtvision.tasks.base import HeadInfo, Task, register_task
from mtvision.utils.arrays import to_numpy
from mtvision.utils.topk import scores_from_top_k, top_k
from mtvision.visualization.draw import draw_classification, draw_ranked, draw_topk

__all__ = ["CLASSIFICATION", "Classification", "classification_to_original"]


class Classification(Task):
    """Results: ``{"labels": [k ids], "label_names": [k names], "scores": [k softmax
    probabilities]}``, the ``topk`` best classes, best first (a deployed graph knows
    its own top-k only). Pictures: the classes in a caption below the image.
    Agreement: the share of images with the same top-1 label."""

    name = "classification"
    fields = ("pred_score", "pred_label", "gt_label")
    draw_order = 2
    in_image_pixels = False

    def deploy_options(
        self, topk: int, seg_logits: bool, phone: bool = False, class_map: bool = False
    ) -> dict:
        """``phone``: every class's probability (``probabilities`` (N, K))."""
        return {"topk": topk, "probabilities": phone}

    def deploy_metadata(
        self, head, topk: int, phone: bool = False, input_size: tuple[int, int] | None = None
    ) -> dict:
        return {"topk": min(int(topk), int(head.num_classes))}

    def finish_phone_outputs(
        self, outputs: Mapping[str, Tensor], info: Mapping, input_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """``probabilities`` (N, K) -> the top ``info["topk"]``: ``scores``, ``labels`` (N, k)."""
        probabilities = torch.as_tensor(outputs["probabilities"]).float()
        scores, labels = probabilities.topk(int(info["topk"]), dim=1)
        return {"scores": scores, "labels": labels}

    def from_deployed(
        self, outputs: Mapping[str, Tensor], samples: Sequence[dict], info: Mapping
    ) -> list[dict]:
        """The top-k spread into score vectors (zeros for the classes not returned)."""
        scores = scores_from_top_k(outputs["labels"], outputs["scores"], int(info["num_classes"]))
        results = {"pred_score": scores, "pred_label": outputs["labels"][:, 0]}
        return classification_to_original(results, samples)

    def agreement(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> float:
        return float((expected["labels"][:, 0] == actual["labels"][:, 0]).double().mean())

    def max_score_difference(
        self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]
    ) -> float:
        """Largest |difference| of the top-k scores."""
        return float((expected["scores"].double() - actual["scores"].double()).abs().max())

    def to_deployed(self, prediction: Mapping, topk: int = 5) -> dict[str, Tensor]:
        """``torch.topk`` of ``pred_score``: ``scores`` and ``labels`` (1, k), best first."""
        scores = torch.as_tensor(prediction["pred_score"]).reshape(1, -1)
        values, indices = scores.topk(min(int(topk), scores.shape[1]), dim=1)
        return {"scores": values, "labels": indices}

    def summary(self, outputs: Mapping[str, Tensor]) -> str:
        """``"top-5, top-1 382"``."""
        labels = outputs["labels"][0]
        return f"top-{len(labels)}, top-1 {int(labels[0])}"

    def comparison(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> str:
        """Whether the top-1 is the same, how many of ``expected``'s top-k labels ``actual``
        has too, and the largest score difference (:meth:`max_score_difference`)."""
        want, got = expected["labels"][0].tolist(), actual["labels"][0].tolist()
        same = "same" if int(want[0]) == int(got[0]) else "DIFFERENT"
        overlap = len(set(want) & set(got))
        difference = self.max_score_difference(expected, actual)
        return (
            f"top-1 {same}, top-{len(want)} overlap {overlap}/{len(want)}, "
            f"max |score diff| {difference:.2g}"
        )

    def result(
        self, prediction: Mapping, head: HeadInfo, topk: int = 5, score_threshold: float = 0.0
    ) -> dict:
        scores = to_numpy(prediction["pred_score"], np.float64).reshape(-1)
        k = min(topk, scores.size, head.max_topk or scores.size)
        labels = [int(label) for label in top_k(scores, k)]
        return {
            "labels": labels,
            "label_names": [head.label_name(label) for label in labels],
            "scores": [float(scores[label]) for label in labels],
        }

    def draw(self, picture: np.ndarray, prediction: Mapping, head: HeadInfo, options):
        return draw_topk(
            picture,
            to_numpy(prediction["pred_score"]),
            head.classes,
            options.topk,
            prediction.get("gt_label"),
        )

    def draw_result(
        self, picture: np.ndarray, result: Mapping, head: HeadInfo, options, scale: float = 1.0
    ):
        return draw_ranked(picture, result["labels"], result["scores"], head.classes)

    def draw_tile(self, image: np.ndarray, prediction: Mapping, head: HeadInfo, size: int):
        """The predicted class and score (green when right, red when wrong) and the true
        class below the image resized to ``size`` x ``size``."""
        return draw_classification(image, head.classes, prediction, size)


CLASSIFICATION = register_task(Classification())


def classification_to_original(
    results: dict[str, Tensor], data_samples: Sequence[dict]
) -> list[dict]:
    """One dict per image of ``{"pred_score": (N, K), "pred_label": (N,)}``: ``pred_score``
    (K,), ``pred_label`` int, and ``gt_label`` when the sample has a ``label``."""
    predictions = [
        {"pred_score": score, "pred_label": label}
        for score, label in zip(results["pred_score"], results["pred_label"].tolist(), strict=True)
    ]
    for prediction, sample in zip(predictions, data_samples, strict=True):
        if "label" in sample:
            prediction["gt_label"] = int(sample["label"])
    return predictions
