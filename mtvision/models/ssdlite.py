"""The SSDLite detector by name: ``ssdlite320_mobilenet_v2`` (MobileNetV2 paper, section 6.2)."""

from __future__ import annotations

from mtvision.models.multi_task_model import MultiTaskModel
from mtvision.models.named_models import register_model

# TF's batch-norm decay 0.97 = PyTorch momentum 0.03, eps 1e-3: torchvision's and mmdet's
# SSDLite recipe, on the whole model (backbone included).
SSDLITE_BN_EPS = 1e-3
SSDLITE_BN_MOMENTUM = 0.03


@register_model("ssdlite320_mobilenet_v2")
def ssdlite320_mobilenet_v2(
    num_classes: int = 80,
    width_mult: float = 1.0,
    output_stride: int = 32,
    anchor_generator: dict | None = None,
    cls_loss: str = "softmax",
    test_cfg: dict | None = None,
    padding: str = "symmetric",
    data_preprocessor: dict | None = None,
    **backbone_kwargs,
) -> MultiTaskModel:
    """SSDLite on MobileNetV2, meant for 320x320 inputs: a MultiTaskModel with one
    ``detection`` head (:class:`~mtvision.heads.SSDLiteHead`).

    ``num_classes`` foreground classes; ``anchor_generator``, ``cls_loss`` and
    ``test_cfg`` as in ``SSDLiteHead``; ``output_stride=16`` dilates the backbone's
    last stage (maps 20, 20, 10, 5, 3, 2 at 320x320). ``padding`` (``"same"``: TF's
    rule, for a backbone converted from TF) goes to the backbone and the head;
    ``data_preprocessor`` replaces the default (ImageNet mean/std). Extra keyword
    arguments go to the backbone. Width 1.0, 80 classes: 4,337,013 parameters (paper: 4.3M).
    """
    return MultiTaskModel(
        backbone=dict(
            type="MobileNetV2",
            width_mult=width_mult,
            output_stride=output_stride,
            padding=padding,
            **backbone_kwargs,
        ),
        heads=dict(
            detection=dict(
                type="SSDLiteHead",
                num_classes=num_classes,
                anchor_generator=anchor_generator,
                cls_loss=cls_loss,
                test_cfg=test_cfg,
                padding=padding,
            )
        ),
        data_preprocessor=data_preprocessor,
        bn_eps=SSDLITE_BN_EPS,
        bn_momentum=SSDLITE_BN_MOMENTUM,
    )
