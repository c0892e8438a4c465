"""mtvision: mobile vision models around one MobileNetV2 backbone."""

__version__ = "0.1.0"


def create_model(name: str, checkpoint: str | None = None, **kwargs):
    """Build a model by its registered name, e.g. ``create_model("mobilenet_v2", num_classes=5)``;
    ``checkpoint=PATH`` loads weights (and a converted file's architecture), see
    :func:`mtvision.models.named_models.create_model`."""
    from mtvision.models.named_models import create_model as _create_model

    return _create_model(name, checkpoint=checkpoint, **kwargs)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    from mtvision.models.named_models import list_models as _list_models

    return _list_models()


def __getattr__(name: str):
    # The inferencer pulls in the data, model and engine packages: imported when first used.
    if name == "Inferencer":
        from mtvision.apis import Inferencer

        return Inferencer
    raise AttributeError(f"module 'mtvision' has no attribute {name!r}")


__all__ = ["Inferencer", "__version__", "create_model", "list_models"]
