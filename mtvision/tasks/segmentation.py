"""Segmentation heads' adapter: logits or class maps -> label maps at the original size,
results, mask pictures and PNGs, deployed outputs and their agreement.

Prediction fields (:class:`~mtvision.heads.DeepLabV3Head`): ``pred_mask`` (H_o, W_o)
int64 at the original size, ``gt_mask`` when known. Deployed outputs: ``mask`` (N,
H, W) uint8 at the input size, optionally ``seg_logits`` (N, K, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtvision.ops.resize import resize
from mtvision.tasks.base import HeadInfo, Task, register_task
from mtvision.utils.arrays import to_numpy
from mtvision.utils.palette import voc_colormap
from mtvision.visualization.draw import draw_segmentation
from mtvision.visualization.encoders import encode_palette_png

__all__ = [
    "SEGMENTATION",
    "Segmentation",
    "class_map_to_original",
    "label_maps",
    "logits_to_original",
    "probabilities_at_original_size",
]


class Segmentation(Task):
    """Results: ``{"mask": (H, W) uint8 numpy class map at the original size, "labels":
    [classes present, ascending], "label_names": [...], "areas": [pixels of each]}``
    (the JSON of a prediction file names the mask's palette PNG instead). Pictures:
    the image blended with the mask's colours (the dataset's palette, else VOC's).
    Agreement: the share of equal pixels. The deployed graph may take any input size."""

    name = "segmentation"
    fields = ("pred_mask", "gt_mask")
    draw_order = 0
    fixed_input_size = False

    def palette(self, metainfo: Mapping) -> np.ndarray:
        palette = metainfo.get("palette")
        palette = voc_colormap() if palette is None else np.asarray(palette, np.uint8)
        return palette.reshape(-1, 3)

    def deploy_options(
        self, topk: int, seg_logits: bool, phone: bool = False, class_map: bool = False
    ) -> dict:
        """``phone``: the upsampled logits channels last (``class_logits`` (N, H, W, K)), or
        with ``class_map`` the uint8 ``mask`` as in the ONNX graph, taken over the
        channels-last logits as the phone runtimes lay them out."""
        if phone:
            return {"with_logits": False, "class_logits": not class_map, "channels_last": True}
        return {"with_logits": seg_logits}

    def deploy_metadata(
        self, head, topk: int, phone: bool = False, input_size: tuple[int, int] | None = None
    ) -> dict:
        return {"align_corners": bool(getattr(head, "align_corners", False))}

    def finish_phone_outputs(
        self, outputs: Mapping[str, Tensor], info: Mapping, input_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """``class_logits`` (N, H, W, K) -> ``mask`` (N, H, W) uint8, their argmax (a file
        with the class map inside gives its ``mask`` as it is)."""
        if "mask" in outputs:
            return {"mask": torch.as_tensor(outputs["mask"]).to(torch.uint8)}
        logits = torch.as_tensor(outputs["class_logits"])
        return {"mask": logits.argmax(dim=-1).to(torch.uint8)}

    def spatial_axes(self, field: str) -> tuple[int, int] | None:
        return {"mask": (1, 2), "seg_logits": (2, 3), "class_logits": (1, 2)}.get(field)

    def from_deployed(
        self, outputs: Mapping[str, Tensor], samples: Sequence[dict], info: Mapping
    ) -> list[dict]:
        """From the logits when the file has them, else from the class map."""
        if "seg_logits" in outputs:
            return logits_to_original(outputs, samples, bool(info.get("align_corners", False)))
        return class_map_to_original(outputs["mask"], samples)

    def agreement(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> float:
        return float((expected["mask"] == actual["mask"]).double().mean())

    def to_deployed(self, prediction: Mapping, topk: int = 5) -> dict[str, Tensor]:
        """``mask`` (1, H, W): ``pred_mask`` as it is (its dtype; the graph's is uint8)."""
        return {"mask": torch.as_tensor(prediction["pred_mask"])[None]}

    def summary(self, outputs: Mapping[str, Tensor]) -> str:
        """``"mask 513x513, 3 classes"`` (the classes present)."""
        mask = to_numpy(outputs["mask"][0])
        return f"mask {mask.shape[0]}x{mask.shape[1]}, {len(np.unique(mask))} classes"

    def comparison(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> str:
        """The share of pixels the two class maps give the same class."""
        return f"{100 * self.agreement(expected, actual):.2f} % of pixels the same class"

    def result(
        self, prediction: Mapping, head: HeadInfo, topk: int = 5, score_threshold: float = 0.0
    ) -> dict:
        """Raises ValueError: class ids that do not fit a uint8 mask."""
        mask = to_numpy(prediction["pred_mask"])
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(
                f"head {head.name!r}: class map values {mask.min()}..{mask.max()} do not "
                "fit a uint8 mask"
            )
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        labels, areas = np.unique(mask, return_counts=True)
        return {
            "mask": mask,
            "labels": labels.tolist(),
            "label_names": [head.label_name(int(label)) for label in labels],
            "areas": areas.tolist(),
        }

    def result_files(self, result: Mapping, head: HeadInfo) -> tuple[dict, dict[str, bytes]]:
        """The mask as a palette PNG (pixel value = class index)."""
        return dict(result), {"mask": encode_palette_png(result["mask"], head.palette)}

    def prepare_picture(self, prediction: Mapping, image_shape: tuple[int, ...], source: str):
        """``pred_mask`` as an array; it must be at the image's size and fit a palette PNG.

        Raises:
            ValueError: naming ``source`` (the image file) and the sizes or values.
        """
        mask = to_numpy(prediction["pred_mask"])
        if mask.shape != tuple(image_shape[:2]):
            raise ValueError(
                f"{source}: pred_mask is {mask.shape}, the image is {tuple(image_shape[:2])}; "
                "masks must be at the original size"
            )
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(
                f"{source}: pred_mask labels {mask.min()}..{mask.max()} do not fit a palette "
                "PNG (0..255)"
            )
        return {**prediction, "pred_mask": mask}

    def picture_files(self, prediction: Mapping, head: HeadInfo) -> dict[str, bytes]:
        """The class map as a palette PNG."""
        return {"mask": encode_palette_png(prediction["pred_mask"], head.palette)}

    def scaled(self, prediction: Mapping, scale_x: float, scale_y: float, size) -> dict:
        prediction = dict(prediction)
        mask = to_numpy(prediction["pred_mask"]).astype(np.uint8)
        prediction["pred_mask"] = cv2.resize(mask, tuple(size), interpolation=cv2.INTER_NEAREST)
        return prediction

    def draw(self, picture: np.ndarray, prediction: Mapping, head: HeadInfo, options):
        if head.palette is None:
            raise ValueError(f"head {head.name!r}: drawing a pred_mask needs a palette")
        return draw_segmentation(
            picture, to_numpy(prediction["pred_mask"]), head.palette, options.alpha
        )

    def draw_result(
        self, picture: np.ndarray, result: Mapping, head: HeadInfo, options, scale: float = 1.0
    ):
        mask = result["mask"]
        if mask.shape != picture.shape[:2]:
            size = (picture.shape[1], picture.shape[0])
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        return draw_segmentation(picture, mask, head.palette, options.alpha)


SEGMENTATION = register_task(Segmentation())


def logits_to_original(
    results: dict[str, Tensor], data_samples: Sequence[dict], align_corners: bool = False
) -> list[dict]:
    """Per image of ``{"seg_logits": (N, K, H, W)}`` at the input size: logits cut to
    ``meta["img_shape"]``, resized to ``meta["ori_shape"]``, ``pred_mask`` = argmax of
    their softmax; ``gt_mask`` when the sample has a mask."""
    logits = results["seg_logits"]
    probabilities = []
    for index, sample in enumerate(data_samples):
        h, w = (int(s) for s in sample.get("meta", {}).get("img_shape", logits.shape[-2:]))
        image_logits = logits[index : index + 1, :, :h, :w]
        probabilities.append(
            probabilities_at_original_size(image_logits, sample, (h, w), align_corners)
        )
    return label_maps(probabilities, data_samples)


def class_map_to_original(masks: Tensor, data_samples: Sequence[dict]) -> list[dict]:
    """Per image of a deployed graph's (N, H, W) class maps at the input size: the map cut
    to ``meta["img_shape"]`` and resized to ``meta["ori_shape"]`` by nearest neighbour
    (``pred_mask`` int64); ``gt_mask`` when the sample has a mask.

    Equal to :func:`logits_to_original` when the test pipeline does not resize;
    otherwise labels can differ along class borders (the logits are not there to
    interpolate)."""
    predictions = []
    for index, sample in enumerate(data_samples):
        meta = sample.get("meta", {})
        h, w = (int(s) for s in meta.get("img_shape", masks.shape[-2:]))
        out_size = tuple(int(s) for s in meta.get("ori_shape", (h, w)))
        mask = masks[index : index + 1, None, :h, :w]
        if (h, w) != out_size:
            mask = F.interpolate(mask.float(), size=out_size, mode="nearest")
        prediction = {"pred_mask": mask[0, 0].long()}
        if "mask" in sample:
            prediction["gt_mask"] = sample["mask"]
        predictions.append(prediction)
    return predictions


def probabilities_at_original_size(
    image_logits: Tensor, sample: dict, image_size: tuple[int, int], align_corners: bool
) -> Tensor:
    """(1, K, h, w) logits of one image -> (K, H_o, W_o) softmax probabilities at
    ``meta["ori_shape"]`` (default ``image_size``)."""
    out_size = tuple(int(s) for s in sample.get("meta", {}).get("ori_shape", image_size))
    return resize(image_logits, out_size, align_corners).float().softmax(dim=1)[0]


def label_maps(probabilities: list[Tensor], data_samples: Sequence[dict]) -> list[dict]:
    """``pred_mask`` = argmax of each image's (K, H, W) probabilities; ``gt_mask`` when the
    sample has a mask."""
    predictions = []
    for scores, sample in zip(probabilities, data_samples, strict=True):
        prediction = {"pred_mask": scores.argmax(dim=0)}
        if "mask" in sample:
            prediction["gt_mask"] = sample["mask"]
        predictions.append(prediction)
    return predictions
