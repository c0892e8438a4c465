"""Models by name: ``mtvision.create_model(name, **kwargs)`` and ``list_models()``.

Each entry is a function returning a built ``nn.Module``. Task issues add their
entries (detection, segmentation) next to the classification ones here.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator adding a builder to the model table under ``name``."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODEL_BUILDERS:
            raise KeyError(f"model {name!r} is already registered")
        _MODEL_BUILDERS[name] = builder
        return builder

    return decorator


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with the builder's keyword arguments."""
    if name not in _MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; available: {list_models()}")
    return _MODEL_BUILDERS[name](**kwargs)


def list_models() -> list[str]:
    return sorted(_MODEL_BUILDERS)


def _mobilenet_v2_classifier(width_mult: float):
    def build(
        num_classes: int = 1000,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        **backbone_kwargs,
    ) -> nn.Module:
        from mtvision.models.image_classifier import ImageClassifier

        return ImageClassifier(
            backbone=dict(type="MobileNetV2", width_mult=width_mult, **backbone_kwargs),
            head=dict(
                type="ClassifierHead",
                in_feature="final_conv",
                num_classes=num_classes,
                dropout=dropout,
            ),
            label_smoothing=label_smoothing,
        )

    build.__doc__ = (
        f"MobileNetV2 (width {width_mult}) image classifier; extra keyword "
        "arguments go to the backbone (output_stride, frozen_stages, ...)."
    )
    return build


for _suffix, _width in (("", 1.0), ("_140", 1.4), ("_075", 0.75), ("_050", 0.5), ("_035", 0.35)):
    register_model(f"mobilenet_v2{_suffix}")(_mobilenet_v2_classifier(_width))
