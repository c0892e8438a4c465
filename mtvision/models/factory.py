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


def create_model(name: str, checkpoint: str | None = None, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with the builder's keyword arguments.

    ``checkpoint``: an mtvision checkpoint file (``state_dict`` + ``meta``, e.g. a
    training run's ``last.pth`` or a file written by ``tools/convert_weights.py``),
    loaded strictly and read with ``weights_only=True``; the model is returned in
    eval mode. When the checkpoint's ``meta["model"]`` names its builder
    (``{"name": ..., "kwargs": {...}}``, as converted checkpoints do), those
    keyword arguments are the defaults, so ``create_model(name, checkpoint=path)``
    rebuilds the architecture and preprocessing the weights need; explicit keyword
    arguments override them.

    Raises:
        KeyError: unknown ``name``.
        FileNotFoundError, CheckpointError: the checkpoint is missing, unreadable,
            made for another builder, or does not fit the model (keys and shapes
            listed).
    """
    if name not in _MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; available: {list_models()}")
    if checkpoint is None:
        return _MODEL_BUILDERS[name](**kwargs)

    from mtvision.engine.checkpoint import check_state_dict_fits, load_checkpoint_file
    from mtvision.engine.model_loading import state_dict_of
    from mtvision.errors import CheckpointError

    contents = load_checkpoint_file(checkpoint, map_location="cpu")
    if not isinstance(contents, dict):
        raise CheckpointError(f"{checkpoint}: holds a {type(contents).__name__}, not a dict")
    described = (contents.get("meta") or {}).get("model") or {}
    if described.get("name", name) != name:
        raise CheckpointError(
            f"{checkpoint}: holds weights for create_model({described['name']!r}), not {name!r}"
        )
    model = _MODEL_BUILDERS[name](**{**described.get("kwargs", {}), **kwargs})
    state_dict = state_dict_of(contents)
    check_state_dict_fits(model, state_dict, checkpoint)
    model.load_state_dict(state_dict, strict=False)  # strictness checked above
    return model.eval()


def list_models() -> list[str]:
    return sorted(_MODEL_BUILDERS)


def _mobilenet_v2_classifier(width_mult: float):
    def build(
        num_classes: int = 1000,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        data_preprocessor: dict | None = None,
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
            data_preprocessor=data_preprocessor,
        )

    build.__doc__ = (
        f"MobileNetV2 (width {width_mult}) image classifier; extra keyword "
        "arguments go to the backbone (output_stride, frozen_stages, padding, ...)."
    )
    return build


for _suffix, _width in (("", 1.0), ("_140", 1.4), ("_075", 0.75), ("_050", 0.5), ("_035", 0.35)):
    register_model(f"mobilenet_v2{_suffix}")(_mobilenet_v2_classifier(_width))


@register_model("deeplabv3_mobilenet_v2")
def _deeplabv3_mobilenet_v2(
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
) -> nn.Module:
    """DeepLabv3 on MobileNetV2's 320-channel ``stage7`` (paper section 6.3, Table 7).

    ``head="ondevice"``: 1x1 + image-pooling branches (the paper's pick);
    ``head="aspp"``: adds 3x3 branches at ``atrous_rates`` (stated at output stride
    16, doubled at 8). ``padding`` (``"same"``: TF's rule) goes to the backbone and
    the head, ``align_corners`` to the segmentor's resizes. Extra keyword arguments
    go to the backbone.
    """
    from mtvision.models.segmentor import Segmentor

    heads = {"ondevice": False, "aspp": True}
    if head not in heads:
        raise ValueError(f"head must be one of {list(heads)}, got {head!r}")
    return Segmentor(
        backbone=dict(
            type="MobileNetV2",
            width_mult=width_mult,
            output_stride=output_stride,
            padding=padding,
            **backbone_kwargs,
        ),
        decode_head=dict(
            type="DeepLabV3Head",
            in_feature="stage7",
            num_classes=num_classes,
            channels=channels,
            aspp=heads[head],
            atrous_rates=atrous_rates,
            dropout=dropout,
            padding=padding,
        ),
        ignore_index=ignore_index,
        test_cfg=test_cfg,
        align_corners=align_corners,
        data_preprocessor=data_preprocessor,
    )


@register_model("ssdlite320_mobilenet_v2")
def ssdlite320_mobilenet_v2(
    num_classes: int = 80,
    width_mult: float = 1.0,
    anchor_generator: dict | None = None,
    cls_loss: str = "softmax",
    test_cfg: dict | None = None,
    **backbone_kwargs,
) -> nn.Module:
    """SSDLite on MobileNetV2 (paper section 6.2), meant for 320x320 inputs.

    ``num_classes`` foreground classes; ``anchor_generator``, ``cls_loss`` and
    ``test_cfg`` as in ``SSDLite``. Extra keyword arguments go to the backbone.
    """
    from mtvision.models.ssdlite import SSDLite

    return SSDLite(
        backbone=dict(type="MobileNetV2", width_mult=width_mult, **backbone_kwargs),
        num_classes=num_classes,
        anchor_generator=anchor_generator,
        cls_loss=cls_loss,
        test_cfg=test_cfg,
    )
