"""Weight formats a MobileNetV2 backbone loads: torchvision's layout, mtvision
checkpoints (trained or converted from TFLite), and its own state dict.

The architecture (:mod:`mtvision.backbones.mobilenetv2`) knows nothing of files;
this module knows the files and imports the architecture, never the other way.

**torchvision's layout** (``features.*``, ``classifier.*``):
:func:`torchvision_module_map` gives each torchvision module's path in the
backbone, :func:`load_torchvision_weights` loads a ``mobilenet_v2`` state dict
(the classifier's ``classifier.1.*`` belong to :class:`~mtvision.heads.ClassifierHead`;
:meth:`MultiTaskModel.load_torchvision_state_dict
<mtvision.models.MultiTaskModel.load_torchvision_state_dict>` loads both).

**Pretrained files** (:func:`pretrained_weights`):
``model.backbone.init_cfg=dict(type="Pretrained", checkpoint=PATH)`` (mmengine's
convention, no ``prefix``) starts a task model from pretrained weights. The file
may be, recognised by its keys:

- an **mtvision checkpoint** of any model (keys ``backbone.*`` and ``heads.*``):
  a trained classifier, detector or segmenter, or a file written by
  ``tools/convert_weights.py`` from Google's TFLite weights (or fetched by name,
  ``checkpoint="mtvision://NAME"``, :mod:`mtvision.convert.published_weights`).
  The ``backbone.*`` keys are taken; the heads' keys are skipped.
- a **torchvision** ``mobilenet_v2`` state dict: renamed with
  :func:`torchvision_module_map`; ``classifier.*`` is skipped.
- the **backbone's own** state dict (``stem.*``, ``stage1.*``, ...).

In each, the keys of modules this backbone dropped past its deepest tap (e.g.
``final_conv`` for DeepLab's backbone) are skipped too. Shapes must fit (another
width is an error naming the file; :mod:`mtvision.engine.checkpoint` checks).

A converted TFLite file holds **folded BatchNorm** (``meta["batch_norm"]``: each BN
the identity in eval mode, carrying the folded bias; ``docs/pretrained.md``). Two
things follow here: the running variances are rewritten for this backbone's
``eps`` so that ``running_var + eps`` stays what the file was converted with (an
SSDLite backbone uses eps 1e-3, the converter 1e-5: without this every layer
would be scaled by ``1 / sqrt(1 + 1e-3 - 1e-5)``); and a backbone that would
train its BNs with batch statistics (``norm_eval=False``) gets a warning, since
batch statistics replace the folded scale (top-1 0/14 in a trial, README of the
real-data folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import Tensor, nn

from mtvision.backbones.mobilenetv2 import INVERTED_RESIDUAL_SETTING, MobileNetV2
from mtvision.utils.state_dict import check_state_dict_fits, unwrap_state_dict

__all__ = [
    "LoadResult",
    "PretrainedWeights",
    "load_torchvision_weights",
    "pretrained_weights",
    "rename_torchvision_keys",
    "torchvision_module_map",
]

#: Key prefix of the backbone in every mtvision model's state dict.
BACKBONE_PREFIX = "backbone."
#: Key prefix of torchvision's MobileNetV2 feature layers.
TORCHVISION_PREFIX = "features."


class PretrainedWeights(NamedTuple):
    """The part of a pretrained file a backbone takes.

    ``state_dict``: the weights under the backbone's own keys; ``layout``: what the
    file was recognised as (for the log); ``skipped``: the file's keys that are not
    for this backbone (other parts of a model, modules it dropped), in the file's
    names; ``warnings``: what the user must act on; ``preprocessing``: the file's
    ``meta["preprocessing"]`` (the input its weights expect), if it has one.
    """

    state_dict: dict[str, Tensor]
    layout: str
    skipped: list[str]
    warnings: list[str]
    preprocessing: dict | None


def pretrained_weights(
    backbone: nn.Module,
    state_dict: Mapping[str, Any],
    source: str,
    meta: Mapping | None = None,
) -> PretrainedWeights | None:
    """Sort the (unwrapped) ``state_dict`` of a pretrained file for ``backbone``.

    What ``init_cfg=dict(type="Pretrained", checkpoint=PATH)`` (without ``prefix``)
    loads into a backbone (:class:`mtvision.engine.checkpoint.PretrainedInit` asks
    here): an mtvision checkpoint (its ``backbone.*`` keys), a torchvision
    ``mobilenet_v2`` state dict, or the backbone's own state dict.

    Args:
        backbone: the module to initialise; only a :class:`MobileNetV2` has formats
            here (``None`` is returned for any other module: it takes the keys as
            they are).
        state_dict: the file's weights (see :func:`mtvision.utils.state_dict.unwrap_state_dict`).
        source: names the file in messages.
        meta: the file's ``meta`` (mmengine checkpoints; converted files describe
            their preprocessing and folded BatchNorm there).

    Returns:
        :class:`PretrainedWeights`; keys the backbone does not recognise stay in
        ``state_dict`` under their own names, so that the caller's fit check
        reports them.
    """
    if not isinstance(backbone, MobileNetV2):
        return None
    keys = [str(key) for key in state_dict]
    skipped: list[str] = []
    if any(key.startswith(BACKBONE_PREFIX) for key in keys):
        layout = "mtvision checkpoint, its 'backbone.*' keys"
        weights = {}
        for key, value in state_dict.items():
            ours = key[len(BACKBONE_PREFIX) :] if key.startswith(BACKBONE_PREFIX) else None
            if ours is None or backbone.is_dropped(ours.rpartition(".")[0]):
                skipped.append(key)
            else:
                weights[ours] = value
    elif any(key.startswith(TORCHVISION_PREFIX) for key in keys):
        layout = "torchvision mobilenet_v2 state dict"
        weights, skipped, unplaced = rename_torchvision_keys(backbone, state_dict)
        weights.update({key: state_dict[key] for key in unplaced})  # reported as unexpected
    else:
        layout = f"{type(backbone).__name__} state dict"
        weights = {}
        for key, value in state_dict.items():
            if backbone.is_dropped(key.rpartition(".")[0]):
                skipped.append(key)
            else:
                weights[key] = value

    meta = meta or {}
    warnings = []
    folded = meta.get("batch_norm")
    if isinstance(folded, Mapping) and folded.get("folded"):
        weights = _running_var_for_own_eps(backbone, weights, float(folded["eps"]))
        if not backbone.norm_eval:
            warnings.append(
                f"{source}: the weights hold folded BatchNorm (identity in eval mode carrying "
                "the folded bias, meta['batch_norm']); training with batch statistics replaces "
                "the folded scale: set the backbone's norm_eval=True (configs/finetune/ do) or "
                "re-estimate the BatchNorm statistics first"
            )
    preprocessing = meta.get("preprocessing")
    return PretrainedWeights(
        weights,
        layout,
        skipped,
        warnings,
        dict(preprocessing) if isinstance(preprocessing, Mapping) else None,
    )


def _running_var_for_own_eps(
    backbone: nn.Module, weights: dict[str, Any], file_eps: float
) -> dict[str, Any]:
    """``running_var + file_eps - eps`` for each BatchNorm of ``backbone``, so that its
    ``sqrt(running_var + eps)`` equals the file's."""
    adjusted = dict(weights)
    for name, module in backbone.named_modules():
        key = f"{name}.running_var"
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and isinstance(
            adjusted.get(key), Tensor
        ):
            adjusted[key] = adjusted[key] + (file_eps - module.eps)
    return adjusted


# ------------------------------------------------------------- torchvision's layout


class LoadResult(NamedTuple):
    """Keys skipped by a non-strict :func:`load_torchvision_weights`, each with its shape."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def torchvision_module_map() -> dict[str, str]:
    """torchvision ``mobilenet_v2`` module path -> module path in :class:`MobileNetV2`.

    torchvision numbers its blocks ``features.1`` .. ``features.17`` and the layers
    inside each ``conv.0`` .., with no expansion layer when t == 1; here they are
    ``stageN.i.{expand,depthwise,project}``. The map covers the whole architecture
    (Table 2, the same at every width), including modules a backbone may have
    dropped (``dropped_modules``), and not torchvision's ``classifier`` (a head's
    weights).
    """
    mapping = {"features.0.0": "stem.conv", "features.0.1": "stem.bn"}
    feature_index = 1
    for stage_index, (t, _, n, _) in enumerate(INVERTED_RESIDUAL_SETTING, start=1):
        for block_index in range(n):
            theirs = f"features.{feature_index}.conv"
            ours = f"stage{stage_index}.{block_index}"
            layers = ["expand", "depthwise"] if t != 1 else ["depthwise"]
            for position, layer in enumerate(layers):
                mapping[f"{theirs}.{position}.0"] = f"{ours}.{layer}.conv"
                mapping[f"{theirs}.{position}.1"] = f"{ours}.{layer}.bn"
            mapping[f"{theirs}.{len(layers)}"] = f"{ours}.project.conv"
            mapping[f"{theirs}.{len(layers) + 1}"] = f"{ours}.project.bn"
            feature_index += 1
    mapping[f"features.{feature_index}.0"] = "final_conv.conv"
    mapping[f"features.{feature_index}.1"] = "final_conv.bn"
    return mapping


def rename_torchvision_keys(
    backbone: MobileNetV2, state_dict: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """A torchvision ``mobilenet_v2`` state dict in ``backbone``'s key names.

    Returns ``(renamed, skipped, unplaced)``: the weights under the backbone's keys
    (:func:`torchvision_module_map`); the torchvision keys absent here on purpose
    (``classifier.*``, a head's, and the modules dropped past the deepest tap); and
    the keys that map to nothing.
    """
    module_map = torchvision_module_map()
    own_keys = set(backbone.state_dict())
    renamed: dict[str, Tensor] = {}
    skipped: list[str] = []
    unplaced: list[str] = []
    for key, value in state_dict.items():
        module_path, _, tensor_name = key.rpartition(".")
        our_key = f"{module_map.get(module_path)}.{tensor_name}"
        if module_path in module_map and our_key in own_keys:
            renamed[our_key] = value
        elif key.startswith("classifier."):
            skipped.append(key)
        elif module_path in module_map and backbone.is_dropped(module_map[module_path]):
            skipped.append(key)
        else:
            unplaced.append(key)
    return renamed, skipped, unplaced


def load_torchvision_weights(
    backbone: MobileNetV2, state_dict: Mapping[str, Tensor], strict: bool = True
) -> LoadResult:
    """Load a torchvision ``mobilenet_v2`` state dict (same width) into ``backbone``.

    Accepts what every mtvision weight loader does
    (:func:`mtvision.utils.state_dict.unwrap_state_dict`: a checkpoint dict holding
    ``state_dict``/``model``, a uniform ``module.`` prefix). Keys are renamed with
    :func:`torchvision_module_map`. Keys absent on purpose are skipped:
    ``classifier.*`` (the classifier is a head, :class:`~mtvision.heads.ClassifierHead`)
    and the keys of the modules the backbone dropped past its deepest tap
    (``dropped_modules``). Every other key must fit: weights that do not fit raise
    :class:`~mtvision.errors.CheckpointError` (a ``ValueError``) with the one report
    of :func:`mtvision.utils.state_dict.check_state_dict_fits`: shape mismatches,
    non-tensor values and a load matching no key always; missing and unexpected keys
    when ``strict``, else they are skipped and returned.
    """
    state_dict = unwrap_state_dict(state_dict, "torchvision mobilenet_v2 weights")
    own_state = backbone.state_dict()
    renamed, _, unexpected = rename_torchvision_keys(backbone, state_dict)
    fit = check_state_dict_fits(
        own_state,
        renamed,
        source="torchvision mobilenet_v2 weights",
        strict=strict,
        model_name=f"MobileNetV2(width_mult={backbone.width_mult})",
        unplaced=unexpected,
    )
    backbone.load_state_dict(renamed, strict=False)
    return LoadResult(
        missing_keys=[f"{key} {tuple(own_state[key].shape)}" for key in fit.missing],
        unexpected_keys=[f"{key} {_shape_of(state_dict[key])}" for key in unexpected],
    )


def _shape_of(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else f"({type(value).__name__})"
