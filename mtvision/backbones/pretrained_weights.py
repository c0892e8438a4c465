"""What a MobileNetV2 backbone takes from a pretrained file, whatever made the file.

``model.backbone.init_cfg=dict(type="Pretrained", checkpoint=PATH)`` (mmengine's
convention, no ``prefix``) starts a task model from pretrained weights. The file
may be, recognised by its keys:

- an **mtvision checkpoint** of any model (keys ``backbone.*`` and ``heads.*``):
  a trained classifier, detector or segmenter, or a file written by
  ``tools/convert_weights.py`` from Google's TFLite weights. The ``backbone.*``
  keys are taken; the heads' keys are skipped.
- a **torchvision** ``mobilenet_v2`` state dict (``features.*``, ``classifier.*``):
  renamed with :meth:`MobileNetV2.torchvision_module_map
  <mtvision.backbones.MobileNetV2.torchvision_module_map>`; ``classifier.*`` is
  skipped.
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
from typing import TYPE_CHECKING, Any, NamedTuple

from torch import Tensor, nn

if TYPE_CHECKING:
    from mtvision.backbones.mobilenetv2 import MobileNetV2

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


def mobilenet_v2_pretrained_weights(
    backbone: MobileNetV2,
    state_dict: Mapping[str, Any],
    source: str,
    meta: Mapping | None = None,
) -> PretrainedWeights:
    """Sort the (unwrapped) ``state_dict`` of a pretrained file for ``backbone``.

    Args:
        backbone: the MobileNetV2 to initialise.
        state_dict: the file's weights (see :func:`mtvision.utils.state_dict.unwrap_state_dict`).
        source: names the file in messages.
        meta: the file's ``meta`` (mmengine checkpoints; converted files describe
            their preprocessing and folded BatchNorm there).

    Returns:
        :class:`PretrainedWeights`; keys the backbone does not recognise stay in
        ``state_dict`` under their own names, so that the caller's fit check
        reports them.
    """
    keys = [str(key) for key in state_dict]
    skipped: list[str] = []
    if any(key.startswith(BACKBONE_PREFIX) for key in keys):
        layout = "mtvision checkpoint, its 'backbone.*' keys"
        weights = {}
        for key, value in state_dict.items():
            ours = key[len(BACKBONE_PREFIX) :] if key.startswith(BACKBONE_PREFIX) else None
            if ours is None or backbone._dropped_on_purpose(ours.rpartition(".")[0]):
                skipped.append(key)
            else:
                weights[ours] = value
    elif any(key.startswith(TORCHVISION_PREFIX) for key in keys):
        layout = "torchvision mobilenet_v2 state dict"
        weights, skipped, unplaced = backbone.rename_torchvision_keys(state_dict)
        weights.update({key: state_dict[key] for key in unplaced})  # reported as unexpected
    else:
        layout = f"{type(backbone).__name__} state dict"
        weights = {}
        for key, value in state_dict.items():
            if backbone._dropped_on_purpose(key.rpartition(".")[0]):
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
