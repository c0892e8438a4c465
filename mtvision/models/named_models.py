"""Models by name: ``mtvision.create_model(name, **kwargs)``, ``list_models()``, ``register_model``.

Each name maps to a builder function returning a built model; the builders live
next to what they build (``image_classifier.py``: ``mobilenet_v2*``,
``ssdlite.py``: ``ssdlite320_mobilenet_v2``, ``deeplabv3.py``:
``deeplabv3_mobilenet_v2``, ``multitask.py``: ``mobilenet_v2_multitask``).
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
    import mtvision.models  # noqa: F401  (registers the builders)

    if name not in _MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; available: {list_models()}")
    return _MODEL_BUILDERS[name](**kwargs)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    import mtvision.models  # noqa: F401  (registers the builders)

    return sorted(_MODEL_BUILDERS)
