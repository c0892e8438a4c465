"""The DeepLabv3+ segmenter by name: ``deeplabv3plus_mobilenet_v2`` (Chen et al., ECCV 2018)."""

from __future__ import annotations

from mtvision.models.deeplabv3 import HEAD_VARIANTS
from mtvision.models.multi_task_model import MultiTaskModel
from mtvision.models.named_models import register_model


@register_model("deeplabv3plus_mobilenet_v2")
def deeplabv3plus_mobilenet_v2(
    num_classes: int = 21,
    head: str = "ondevice",
    output_stride: int = 16,
    width_mult: float = 1.0,
    channels: int = 256,
    atrous_rates: tuple[int, ...] = (6, 12, 18),
    low_level_channels: int = 48,
    decoder_channels: int = 256,
    dropout: float = 0.1,
    ignore_index: int = 255,
    test_cfg: dict | None = None,
    padding: str = "symmetric",
    align_corners: bool = False,
    tf_legacy_resize: bool = False,
    data_preprocessor: dict | None = None,
    **backbone_kwargs,
) -> MultiTaskModel:
    """DeepLabv3+ on MobileNetV2: a MultiTaskModel with one ``segmentation`` head
    (:class:`~mtvision.heads.DeepLabV3PlusHead`) reading ``stage7`` (encoder) and
    ``layer4_depthwise`` (decoder, stride 4); the backbone keeps no module after
    ``stage7``.

    ``head="ondevice"``: encoder of 1x1 + image-pooling branches (Google's MLPerf
    ADE20K file); ``head="aspp"``: adds 3x3 branches at ``atrous_rates`` (stated at
    output stride 16). ``padding="same"``, ``tf_legacy_resize=True`` and the (x - 127.5)
    / 127.5 ``data_preprocessor`` are what TF's weights need (docs/pretrained.md).
    Extra keyword arguments go to the backbone.
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
                type="DeepLabV3PlusHead",
                num_classes=num_classes,
                channels=channels,
                aspp=HEAD_VARIANTS[head],
                atrous_rates=atrous_rates,
                low_level_channels=low_level_channels,
                decoder_channels=decoder_channels,
                dropout=dropout,
                ignore_index=ignore_index,
                test_cfg=test_cfg,
                padding=padding,
                align_corners=align_corners,
                tf_legacy_resize=tf_legacy_resize,
            )
        ),
        data_preprocessor=data_preprocessor,
    )
