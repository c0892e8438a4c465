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


def create_model(
    name: str, checkpoint: str | None = None, weights: str | None = None, **kwargs
) -> nn.Module:
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

    ``weights``: the name of published pretrained weights for this model
    (:func:`~mtvision.convert.published_weights.list_published_weights`, e.g.
    ``"deeplabv3_mnv2_pascal_quant"``; Google's TFLite files), as torchvision's
    ``weights=``: fetched into torch's hub cache on first use, sha256-checked,
    converted and cached (:mod:`mtvision.convert.published_weights`), then loaded
    as ``checkpoint`` is.

    Raises:
        KeyError: unknown ``name``.
        ValueError: both ``checkpoint`` and ``weights``.
        FileNotFoundError, CheckpointError: the checkpoint is missing, unreadable,
            made for another builder, or does not fit the model (keys and shapes
            listed in one line); unknown ``weights`` or weights for another model,
            a failed download (the URL and where to place the file), a wrong sha256.
    """
    import mtvision.models  # noqa: F401  (registers the builders)

    if name not in _MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; available: {list_models()}")
    if weights is not None:
        if checkpoint is not None:
            raise ValueError("create_model: give checkpoint= or weights=, not both")
        checkpoint = _published_checkpoint(name, weights)
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


def _published_checkpoint(name: str, weights: str) -> str:
    """The cached converted checkpoint of the published ``weights`` for model ``name``."""
    from mtvision.convert.published_weights import (
        list_published_weights,
        published_checkpoint,
        published_weights,
    )
    from mtvision.errors import CheckpointError

    entry = published_weights(weights)
    if entry.model != name:
        raise CheckpointError(
            f"weights {entry.name!r} are for create_model({entry.model!r}), not {name!r}; "
            f"weights for {name!r}: {list_published_weights(name) or 'none'}"
        )
    return published_checkpoint(entry.name)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    import mtvision.models  # noqa: F401  (registers the builders)

    return sorted(_MODEL_BUILDERS)
