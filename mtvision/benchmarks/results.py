"""Per-task results of the end-to-end benchmark: one contender's output as numpy, described
and compared.

The only module of :mod:`mtvision.benchmarks` that turns a task kind (``cls``,
``det``, ``seg``) into a result format: top-5 ``labels``/``scores`` (K,), ``boxes``
(N, 4) x1y1x2y2 in input pixels with ``scores``/``labels`` (N,), or a ``mask``
(H, W) class map; the multi-task rows hold one such dict per head name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.ops import box_iou

#: Results per image of the classifier contenders: the top-5.
E2E_TOPK = 5
#: The head each single-task benchmark times (its name in mtvision's models and the
#: deployed graphs' metadata), and the task of each head of the multi-task model.
TASK_HEADS = dict(cls="classification", det="detection", seg="segmentation")
MULTITASK_HEADS = {head: task for task, head in TASK_HEADS.items()}


def predict_output(task: str, prediction: dict) -> object:
    """What mtvision's torch predict path returns inside the timing: ``torch.topk``'s
    ``(values, indices)`` over the (1, K) scores for ``cls``, else the prediction."""
    if task == "cls":
        return prediction["pred_score"][None].topk(E2E_TOPK, dim=1)
    return prediction


def topk_result(output) -> dict:
    """``(values, indices)`` of ``torch.topk`` over (1, K) scores."""
    values, indices = output
    return {"scores": values[0].numpy(), "labels": indices[0].numpy()}


def eager_result(task: str, output, mask_of: Callable) -> dict:
    """An eager contender's output in the comparison format: top-5 for ``cls``, boxes /
    scores / labels for ``det``, the class map (``mask_of(output)``) for ``seg``."""
    if task == "cls":
        return topk_result(output)
    if task == "det":
        return {key: output[key].numpy() for key in ("boxes", "scores", "labels")}
    return {"mask": mask_of(output).numpy()}


def deployed_result(task: str, outputs: dict[str, np.ndarray], prefix: str = "") -> dict:
    """Image 0's results from a deployed graph's outputs (``prefix``: ``"<head>."``)."""
    if task == "cls":
        return {"scores": outputs[f"{prefix}scores"][0], "labels": outputs[f"{prefix}labels"][0]}
    if task == "det":
        count = int(outputs[f"{prefix}num_detections"][0])
        return {
            field_: outputs[f"{prefix}{field_}"][0, :count]
            for field_ in ("boxes", "scores", "labels")
        }
    return {"mask": outputs[f"{prefix}mask"][0]}


def describe(result: dict) -> str:
    """One cell: what a contender returned for the timed image."""
    if "mask" in result:
        mask = result["mask"]
        return f"mask {mask.shape[0]}x{mask.shape[1]}, {len(np.unique(mask))} classes"
    if "boxes" in result:
        return f"{len(result['boxes'])} boxes"
    if "labels" in result:
        return f"top-{len(result['labels'])}, top-1 {int(result['labels'][0])}"
    return "; ".join(f"{head}: {describe(head_result)}" for head, head_result in result.items())


def same_top(a: dict, b: dict, names: str) -> str:
    """Whether two top-5 results share the top-1, how many labels they share, and the
    largest score difference."""
    same = int(a["labels"][0]) == int(b["labels"][0])
    overlap = len(set(a["labels"].tolist()) & set(b["labels"].tolist()))
    diff = float(np.abs(np.asarray(a["scores"], np.float64) - b["scores"]).max())
    return (
        f"{names}: top-1 {'same' if same else 'DIFFERENT'}, top-5 overlap {overlap}/{len(a['labels'])}, "
        f"max |score diff| {diff:.2g}"
    )


def same_boxes(a: dict, b: dict, names: str) -> str:
    """Counts, and for each box of ``a`` the best IoU with a box of ``b`` of its class."""
    if len(a["boxes"]) == 0 or len(b["boxes"]) == 0:
        return f"{names}: {len(a['boxes'])} vs {len(b['boxes'])} boxes"
    iou = box_iou(torch.as_tensor(a["boxes"]), torch.as_tensor(b["boxes"]))
    same_class = torch.as_tensor(a["labels"])[:, None] == torch.as_tensor(b["labels"])[None]
    # A box clipped to zero area has IoU 0/0 with itself: count it as not matched.
    best = (iou.nan_to_num(0.0) * same_class).max(dim=1).values
    return (
        f"{names}: {len(a['boxes'])} vs {len(b['boxes'])} boxes, best same-class IoU "
        f"min {float(best.min()):.3f} median {float(best.median()):.3f}"
    )


def same_mask(a: dict, b: dict, names: str) -> str:
    """The share of pixels two class maps give the same class."""
    agreement = float((np.asarray(a["mask"]) == np.asarray(b["mask"])).mean())
    return f"{names}: {100 * agreement:.2f} % of pixels the same class"


SAME = dict(cls=same_top, det=same_boxes, seg=same_mask)


def mtvision_agreement(task: str) -> Callable[[dict[str, dict]], list[str]]:
    """torch vs onnxruntime float (the export), onnxruntime int8 vs float (quantisation),
    OpenVINO vs onnxruntime when there, and for ``cls`` torch vs torchvision (same weights)."""
    same = SAME[task]

    def agreement(results: dict[str, dict]) -> list[str]:
        lines = [
            same(results["mtvision torch"], results["mtvision ort float"], "torch vs ort float"),
            same(results["mtvision ort int8"], results["mtvision ort float"], "ort int8 vs float"),
        ]
        for precision in ("float", "int8"):
            if f"mtvision openvino {precision}" in results:
                lines.append(
                    same(
                        results[f"mtvision openvino {precision}"],
                        results[f"mtvision ort {precision}"],
                        f"openvino {precision} vs ort {precision}",
                    )
                )
        if task == "cls" and "torchvision" in results:
            lines.append(
                same(
                    results["mtvision torch"],
                    results["torchvision"],
                    "torch vs torchvision (same weights)",
                )
            )
        return lines

    return agreement


def multitask_agreement(results: dict[str, dict]) -> list[str]:
    """Each head of the multi-task graph, onnxruntime int8 against float."""
    return [
        SAME[task](
            results["multi-task ort int8"][head],
            results["multi-task ort float"][head],
            f"multi-task {head} ort int8 vs float",
        )
        for head, task in MULTITASK_HEADS.items()
    ]
