"""What every weight loader accepts, and the one report of weights that do not fit.

Used by :meth:`MobileNetV2.load_torchvision_state_dict
<mtvision.backbones.MobileNetV2.load_torchvision_state_dict>`, the classifier's
torchvision loader, the Runner's ``load_from``/``resume``,
:meth:`mtvision.engine.model_source.ModelSource.build_model` (the tools) and
``init_cfg=dict(type="Pretrained", ...)``, so they take the same inputs and
refuse the same ones with the same words. It lives below ``backbones/`` (the
backbone imports it without the engine).

Accepted, in every loader:

- a bare state dict (``{name: Tensor}``, e.g. ``model.state_dict()``);
- a checkpoint dict holding the weights under ``state_dict`` (mmengine,
  timm, Lightning) or ``model`` (torchvision's reference scripts,
  detectron2), taken even when an EMA copy (``state_dict_ema``,
  ``model_ema``, ``ema_state_dict``) sits beside it, as those libraries'
  loaders do; a checkpoint holding *only* an EMA copy gives that copy. A
  checkpoint with both ``state_dict`` and ``model`` is refused in one line
  naming the keys found and what to pass instead (``checkpoint["model"]``);
- keys all starting with ``module.`` (saved from ``DataParallel``/DDP) or
  ``_orig_mod.`` (saved from ``torch.compile``): the common prefix is stripped.

Refused (:class:`~mtvision.errors.CheckpointError`, one line naming the
source): anything that is not a mapping of names; weights that do not fit the
model - missing keys (strict), unexpected keys (strict), shape mismatches and
values that are not tensors where the model has one (always), or, in a
non-strict load, not a single key of the model (a model that would silently
stay random). A value that is not a tensor is never used as one: it is
reported with its type.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from mtvision.errors import CheckpointError

__all__ = [
    "StateDictFit",
    "check_state_dict_fits",
    "compare_state_dicts",
    "strip_uniform_prefixes",
    "summarize_keys",
    "unwrap_state_dict",
]

#: Where checkpoint dicts keep the model's weights (the main copy).
MAIN_KEYS = ("state_dict", "model")
#: Where they keep an exponential-moving-average copy.
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict")
#: Prefixes a wrapper adds to every key: DataParallel/DDP, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_LISTED = 10  # keys named per kind of problem; the rest counted


def unwrap_state_dict(
    checkpoint: Any, source: str, state_dict_key: str | None = None
) -> OrderedDict[str, Any]:
    """The state dict inside ``checkpoint``, with wrapper prefixes stripped.

    Args:
        checkpoint: a state dict or a checkpoint dict (see the module docstring).
        source: names the checkpoint (its file) in errors.
        state_dict_key: the entry holding the weights; ``None`` finds it.

    Raises:
        CheckpointError: not a mapping, no such ``state_dict_key``, or weights
            under both ``state_dict`` and ``model`` with no key given.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{source}: holds a {type(checkpoint).__name__}, not a state dict or a checkpoint "
            "dict (save model.state_dict(), not the model object)"
        )
    nested = [k for k in (*MAIN_KEYS, *EMA_KEYS) if isinstance(checkpoint.get(k), Mapping)]
    if state_dict_key is not None:
        if not isinstance(checkpoint.get(state_dict_key), Mapping):
            raise CheckpointError(
                f"{source}: has no weights under {state_dict_key!r}; its keys: "
                f"{_listed(list(map(str, checkpoint)))}"
            )
        state_dict = checkpoint[state_dict_key]
    elif not nested:
        state_dict = checkpoint
    else:
        main = [k for k in nested if k in MAIN_KEYS]
        if len(main) > 1 or (not main and len(nested) > 1):
            choices = main or nested
            raise CheckpointError(
                f"{source}: holds weights under {', '.join(repr(k) for k in nested)}; load "
                f"one of them: pass checkpoint[{choices[0]!r}] (or checkpoint[{choices[1]!r}]) "
                "instead of the whole checkpoint"
            )
        state_dict = checkpoint[(main or nested)[0]]
    return strip_uniform_prefixes(state_dict)


def strip_uniform_prefixes(state_dict: Mapping[str, Any]) -> OrderedDict[str, Any]:
    """``state_dict`` without a ``module.``/``_orig_mod.`` prefix that every key has
    (repeatedly: ``module.module.`` too). Keeps torch's ``_metadata`` (its keys
    stripped alike). Keys with different prefixes are left as they are."""
    keys = [str(k) for k in state_dict]
    metadata = getattr(state_dict, "_metadata", None)
    stripped = 0
    while keys:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in keys)), None)
        if prefix is None:
            break
        keys = [k[len(prefix) :] for k in keys]
        stripped += len(prefix)
    result = OrderedDict(zip(keys, state_dict.values(), strict=True))
    if metadata is not None:
        result._metadata = type(metadata)(
            (k[stripped:] if len(k) >= stripped else "", v) for k, v in metadata.items()
        )
    return result


class StateDictFit(NamedTuple):
    """How a state dict fits a model's: keys in both with equal shapes (``matched``),
    keys only the model has (``missing``), keys only the weights have
    (``unexpected``), and keys in both whose shape or type differs (``mismatched``,
    each ``"key: weights (shape) vs model (shape)"``)."""

    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    return f"a {type(value).__name__}, not a tensor"


def compare_state_dicts(expected: Mapping[str, Any], given: Mapping[str, Any]) -> StateDictFit:
    """Compare ``given`` weights with a model's ``expected`` state dict.

    A BatchNorm ``num_batches_tracked`` the weights lack is not missing (old
    checkpoints and torchvision's own loading tolerate it), as in mmengine.
    """
    matched, mismatched = [], []
    for key, value in expected.items():
        if key not in given:
            continue
        theirs = given[key]
        if isinstance(theirs, torch.Tensor) and theirs.shape == value.shape:
            matched.append(key)
        else:
            mismatched.append(f"{key}: weights {_describe(theirs)} vs model {_describe(value)}")
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [str(k) for k in given if k not in expected]
    return StateDictFit(matched, missing, unexpected, mismatched)


def check_state_dict_fits(
    model: nn.Module | Mapping[str, Any],
    state_dict: Mapping[str, Any],
    source: str,
    strict: bool = True,
    model_name: str | None = None,
    unplaced: Sequence[str] = (),
) -> StateDictFit:
    """Raise :class:`CheckpointError` (one line) unless ``state_dict`` loads into ``model``.

    Args:
        model: the module, or its ``state_dict()``.
        state_dict: the weights (already unwrapped, see :func:`unwrap_state_dict`).
        source: names the weights (their file) in the message.
        strict: missing and unexpected keys are errors too; without it only
            mismatched shapes/types and a load that matches no key at all are.
        model_name: names the model in the message (default: its class name).
        unplaced: further keys of the weights that the caller could not map to
            the model (a renaming loader), reported as unexpected.

    Returns:
        The :class:`StateDictFit`, for a non-strict caller to report what it skipped.
    """
    expected = model.state_dict() if isinstance(model, nn.Module) else model
    if model_name is None:
        model_name = type(model).__name__ if isinstance(model, nn.Module) else "the model"
    fit = compare_state_dicts(expected, state_dict)
    fit = fit._replace(unexpected=[*fit.unexpected, *map(str, unplaced)])
    problems = [
        f"{label}: {_listed(keys)}"
        for label, keys, counts in (
            ("shape mismatches", fit.mismatched, True),
            ("missing keys (in the model, not in the weights)", fit.missing, strict),
            ("unexpected keys (in the weights, not in the model)", fit.unexpected, strict),
        )
        if keys and counts
    ]
    if expected and not fit.matched and not fit.mismatched:
        problems.insert(
            0,
            f"not one of the model's {len(expected)} keys is in the weights (they hold "
            f"{_listed(fit.unexpected) if fit.unexpected else 'nothing'})",
        )
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not fit {model_name} ({len(fit.matched)} of "
            f"{len(expected)} model keys match; a different architecture or config?): "
            + "; ".join(problems)
        )
    return fit


def summarize_keys(keys: Sequence[str], depth: int = 2) -> str:
    """Keys grouped by their first ``depth`` name parts, with counts, for one log line:
    ``"heads.classification.* (2), backbone.final_conv.* (6)"``; ``"none"`` when empty."""
    groups: dict[str, int] = {}
    for key in keys:
        parts = str(key).split(".")
        group = ".".join(parts[:depth]) + (".*" if len(parts) > depth else "")
        groups[group] = groups.get(group, 0) + 1
    if not groups:
        return "none"
    return ", ".join(f"{group} ({count})" for group, count in groups.items())


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f", ... ({len(keys) - _LISTED} more)" if len(keys) > _LISTED else "")
