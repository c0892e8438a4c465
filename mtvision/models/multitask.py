"""The multi-task model by name: ``mobilenet_v2_multitask``, one MobileNetV2 pass feeding a
classifier, an SSDLite detector and a DeepLabv3 segmenter."""

from __future__ import annotations

from collections.abc import Mapping

from mtvision.models.multi_task_model import MultiTaskModel
from mtvision.models.named_models import register_model

#: Head name -> (head type, default number of classes: ImageNet, COCO, PASCAL VOC).
TASK_HEADS = {
    "classification": ("ClassifierHead", 1000),
    "detection": ("SSDLiteHead", 80),
    "segmentation": ("DeepLabV3Head", 21),
}
DEFAULT_NUM_CLASSES = {name: classes for name, (_, classes) in TASK_HEADS.items()}
#: ``segmentation_head=`` -> the segmentation head's type.
SEGMENTATION_HEADS = {"deeplabv3": "DeepLabV3Head", "deeplabv3plus": "DeepLabV3PlusHead"}


@register_model("mobilenet_v2_multitask")
def mobilenet_v2_multitask(
    num_classes: Mapping[str, int] | None = None,
    width_mult: float = 1.0,
    output_stride: int = 16,
    loss_weights: Mapping[str, float] | None = None,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    segmentation_head: str = "deeplabv3",
    **backbone_kwargs,
) -> MultiTaskModel:
    """One MobileNetV2 (run once per batch) with any subset of three heads.

    Args:
        num_classes: head name -> classes; its keys choose the heads among
            ``classification`` (:class:`~mtvision.heads.ClassifierHead` on
            ``final_conv``), ``detection`` (:class:`~mtvision.heads.SSDLiteHead` on
            ``layer15_expansion`` and ``final_conv``) and ``segmentation``
            (:class:`~mtvision.heads.DeepLabV3Head`, on-device variant, on
            ``stage7``). Default: all three with 1000, 80 and 21 classes.
        width_mult: backbone width.
        output_stride: 16 (default: DeepLab's; the last stage dilated, so SSDLite
            predicts on maps 20, 20, 10, 5, 3, 2 at 320x320) or 32 (SSDLite's
            layout). 16 won on every head at about equal training time in the
            multi-task demo (``docs/results.md``, "Output stride").
        loss_weights: head name -> weight of its losses (default 1 each).
        bn_eps, bn_momentum: BatchNorm settings for the whole model (default
            PyTorch's; the single-task SSDLite uses 1e-3 and 0.03).
        segmentation_head: ``"deeplabv3"`` (default) or ``"deeplabv3plus"``
            (:class:`~mtvision.heads.DeepLabV3PlusHead`, on-device encoder on ``stage7``,
            decoder on ``layer4_depthwise``). Both heads in one model: a
            ``MultiTaskModel`` config with two heads of any names.
        **backbone_kwargs: further MobileNetV2 arguments.

    ``forward(x)`` returns ``{"classification": {...}, "detection": {...},
    "segmentation": {...}}``; the default model has 5,919,858 parameters.
    """
    num_classes = dict(DEFAULT_NUM_CLASSES if num_classes is None else num_classes)
    unknown = sorted(set(num_classes) - set(TASK_HEADS))
    if unknown or not num_classes:
        raise ValueError(
            f"num_classes must map some of {list(TASK_HEADS)} to class counts, got {num_classes}"
        )
    if segmentation_head not in SEGMENTATION_HEADS:
        raise ValueError(
            f"segmentation_head must be one of {list(SEGMENTATION_HEADS)}, got "
            f"{segmentation_head!r}"
        )
    types = {name: head_type for name, (head_type, _) in TASK_HEADS.items()}
    types["segmentation"] = SEGMENTATION_HEADS[segmentation_head]
    heads = {
        name: dict(type=types[name], num_classes=num_classes[name])
        for name in TASK_HEADS
        if name in num_classes
    }
    return MultiTaskModel(
        backbone=dict(
            type="MobileNetV2",
            width_mult=width_mult,
            output_stride=output_stride,
            **backbone_kwargs,
        ),
        heads=heads,
        loss_weights=loss_weights,
        bn_eps=bn_eps,
        bn_momentum=bn_momentum,
    )
