"""How many (anchor, class) pairs reach NMS in the untrained detectors the benchmark times.

Untrained weights score every pair alike, and a threshold that lets all or none
through would make NMS's cost unlike a trained detector's; both detectors get a
score threshold that lets the same number of pairs through on the timed image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mtvision.benchmarks.references import torchvision_input
from mtvision.heads.ssdlite_head import SOFTMAX
from mtvision.tasks import DETECTION, heads_of_task


def _detection_scores(model: nn.Module, image: np.ndarray, head: str) -> torch.Tensor:
    """(A, C) class scores of mtvision's detection head ``head`` on ``image``, as its
    post-processing computes them (softmax without background, or sigmoid)."""
    data = {"inputs": [torch.from_numpy(image).permute(2, 0, 1)], "data_samples": [{}]}
    with torch.inference_mode():
        inputs = model.data_preprocessor(data, False)["inputs"]
        logits = model(inputs)[head]["cls_logits"][0].float()
        return (
            logits.softmax(-1)[:, 1:] if model.heads[head].cls_loss == SOFTMAX else logits.sigmoid()
        )


def threshold_for(scores: torch.Tensor, candidates: int) -> float:
    """The score threshold that lets ``candidates`` (anchor, class) pairs through: halfway
    between the ``candidates``-th and the next score."""
    flat = scores.flatten()
    values = flat.topk(min(candidates + 1, flat.numel())).values
    if len(values) < 2:
        return float(values[-1])
    # Not the next score itself: a deployed graph computes it a rounding error higher than
    # torch does, and would let one more pair through than torch's predict path.
    return float((values[-2] + values[-1]) / 2)


def set_candidates_(model: nn.Module, image: np.ndarray, candidates: int) -> str:
    """Set the score threshold of each of mtvision's detection heads (found by their task)
    so that about ``candidates`` pairs reach NMS on ``image`` (uint8 RGB (H, W, 3));
    returns a note saying so ("" when the model has no detection head)."""
    notes = []
    for head in heads_of_task(model.head_tasks, DETECTION):
        threshold = threshold_for(_detection_scores(model, image, head), candidates)
        model.heads[head].test_cfg["score_threshold"] = threshold
        # At this threshold the per-class cap of 300 candidates cannot bind (there are
        # ``candidates`` pairs in all), so it is left out as a deployment would
        # (``tools/export_onnx.py --topk-candidates 0``); the results are the same.
        model.heads[head].test_cfg["topk_candidates"] = None
        notes.append(
            f"score threshold {threshold:.6g} ({candidates} candidates before NMS, "
            "no per-class top-k)"
        )
    return "; ".join(notes)


class SSDNetwork(nn.Module):
    """torchvision SSD's backbone and head on a normalised batch (train mode needs no
    targets this way), for :func:`~mtvision.utils.parity.randomize_batch_norms_`."""

    def __init__(self, ssd: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = ssd.backbone, ssd.head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(list(self.backbone(x).values()))


def set_torchvision_candidates_(model: nn.Module, image: np.ndarray, candidates: int) -> str:
    """The same for torchvision's SSD (softmax scores without the background class)."""
    with torch.inference_mode():
        images, _ = model.transform([torchvision_input(image, normalize=False)])
        features = list(model.backbone(images.tensors).values())
        logits = model.head(features)["cls_logits"][0]
    threshold = threshold_for(logits.softmax(-1)[:, 1:], candidates)
    model.score_thresh = threshold
    return f"score threshold {threshold:.6g} ({candidates} candidates before NMS)"
