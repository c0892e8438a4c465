"""The MobileNetV2 image classifiers by name: ``mobilenet_v2``, ``mobilenet_v2_140``, ... (paper Table 2)."""

from __future__ import annotations

from mtvision.models.multi_task_model import MultiTaskModel
from mtvision.models.named_models import register_model

WIDTHS = {"": 1.0, "_140": 1.4, "_075": 0.75, "_050": 0.5, "_035": 0.35}


def _mobilenet_v2_classifier(width_mult: float):
    def build(
        num_classes: int = 1000,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        data_preprocessor: dict | None = None,
        **backbone_kwargs,
    ) -> MultiTaskModel:
        return MultiTaskModel(
            backbone=dict(type="MobileNetV2", width_mult=width_mult, **backbone_kwargs),
            heads=dict(
                classification=dict(
                    type="ClassifierHead",
                    num_classes=num_classes,
                    dropout=dropout,
                    label_smoothing=label_smoothing,
                )
            ),
            data_preprocessor=data_preprocessor,
        )

    build.__doc__ = (
        f"MobileNetV2 (width {width_mult}) image classifier: a MultiTaskModel with one "
        "``classification`` head on ``final_conv``; extra keyword arguments go to the "
        "backbone (output_stride, frozen_stages, padding, ...); ``data_preprocessor`` replaces "
        "the default (ImageNet mean/std). 3,504,872 parameters at width 1.0 "
        "and 1000 classes, as torchvision's mobilenet_v2."
    )
    return build


for _suffix, _width in WIDTHS.items():
    register_model(f"mobilenet_v2{_suffix}")(_mobilenet_v2_classifier(_width))
