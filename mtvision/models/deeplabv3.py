"""The DeepLabv3 segmenter by name: ``deeplabv3_mobilenet_v2`` (MobileNetV2 paper, section 6.3)."""

from __future__ import annotations

from mtvision.models.multi_task_model import MultiTaskModel
from mtvision.models.named_models import register_model

#: ``head=`` of :func:`deeplabv3_mobilenet_v2` -> ``aspp`` of the DeepLabV3Head.
HEAD_VARIANTS = {"ondevice": False, "aspp": True}


@register_model("deeplabv3_mobilenet_v2")
def deeplabv3_mobilenet_v2(
    num_classes: int = 21,
    head: str = "ondevice",
    output_stride: int = 16,
    width_mult: float = 1.0,
    channels: int = 256,
    atrous_rates: tuple[int, ...] = (6, 12, 18),
    dropout: float = 0.1,
    ignore_index: int = 255,
    test_cfg: dict | None = None,
    padding: str = "symmetric",
    align_corners: bool = False,
    data_preprocessor: dict | None = None,
    **backbone_kwargs,
) -> MultiTaskModel:
    """DeepLabv3 on MobileNetV2's 320-channel ``stage7`` (Table 7): a MultiTaskModel with one
    ``segmentation`` head (:class:`~mtvision.heads.DeepLabV3Head`); the backbone keeps
    no module after ``stage7``.

    ``head="ondevice"``: 1x1 + image-pooling branches (the paper's pick);
    ``head="aspp"``: adds 3x3 branches at ``atrous_rates`` (stated at output stride
    16, doubled at 8). ``test_cfg=dict(scales=..., flip=...)`` for the multi-scale +
    flip test. ``padding`` (``"same"``: TF's rule) goes to the backbone and the head,
    ``align_corners`` to the head's resizes (TF-DeepLab's weights need both, see
    docs/pretrained.md); ``data_preprocessor`` replaces the default (ImageNet
    mean/std). Extra keyword arguments go to the backbone. 21 classes, on-device
    head: 2,113,557 parameters (paper: 2.11M).
    """
    if head not in HEAD_VARIANTS:
        raise ValueError(f"head must be one of {list(HEAD_VARIANTS)}, got {head!r}")
    return MultiTaskModel(
        backbone=dict(
            type="MobileNetV2",
            width_mult=width_mult,
            output_stride=output_stride,
            padding=padding,
            **backbone_kwargs,
        ),
        heads=dict(
            segmentation=dict(
                type="DeepLabV3Head",
                num_classes=num_classes,
                channels=channels,
                aspp=HEAD_VARIANTS[head],
                atrous_rates=atrous_rates,
                dropout=dropout,
                ignore_index=ignore_index,
                test_cfg=test_cfg,
                padding=padding,
                align_corners=align_corners,
            )
        ),
        data_preprocessor=data_preprocessor,
    )
