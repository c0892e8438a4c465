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


def create_model(name: str, checkpoint: str | None = None, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with the builder's keyword arguments.

    ``checkpoint``: an mtvision checkpoint file (``state_dict`` + ``meta``, e.g. a
    training run's ``last.pth`` or a file written by ``tools/convert_weights.py``),
    read with ``weights_only=True`` and loaded strictly through the loader every
    mtvision weight loader shares (:mod:`mtvision.utils.state_dict`); the model is
    returned in eval mode. When the checkpoint's ``meta["model"]`` names its builder
    (``{"name": ..., "kwargs": {...}}``, as converted checkpoints do), those keyword
    arguments are the defaults, so ``create_model(name, checkpoint=path)`` rebuilds
    the architecture and preprocessing the weights need; explicit keyword arguments
    override them.

    Raises:
        KeyError: unknown ``name``.
        FileNotFoundError, CheckpointError: the checkpoint is missing, unreadable,
            made for another builder, or does not fit the model (keys and shapes
            listed in one line).
    """
    import mtvision.models  # noqa: F401  (registers the builders)

    if name not in _MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; available: {list_models()}")
    if checkpoint is None:
        return _MODEL_BUILDERS[name](**kwargs)

    from mtvision.engine.checkpoint import load_checkpoint_file
    from mtvision.errors import CheckpointError
    from mtvision.utils.state_dict import check_state_dict_fits, unwrap_state_dict

    contents = load_checkpoint_file(checkpoint, map_location="cpu")
    state_dict = unwrap_state_dict(contents, str(checkpoint))
    meta = contents.get("meta") if isinstance(contents.get("meta"), dict) else {}
    described = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    if described.get("name", name) != name:
        raise CheckpointError(
            f"{checkpoint}: holds weights for create_model({described['name']!r}), not {name!r}"
        )
    model = _MODEL_BUILDERS[name](**{**described.get("kwargs", {}), **kwargs})
    check_state_dict_fits(model, state_dict, str(checkpoint))
    model.load_state_dict(state_dict, strict=False)  # strictness checked above
    return model.eval()


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    import mtvision.models  # noqa: F401  (registers the builders)

    return sorted(_MODEL_BUILDERS)
