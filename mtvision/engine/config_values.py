"""Config values checked where mtvision knows their meaning, before anything is built.

mmengine merges any value into a config and leaves it to whatever consumes it:
``lr='1e-3e'`` reaches ``torch.optim.AdamW`` as a string, ``batch_size=0``
reaches torch's ``DataLoader``, each after minutes of setup and ending in a
traceback from deep inside torch. :func:`check_config_values` checks the values
whose meaning is known, at any depth, by the key that holds them:

- counts: ``batch_size``, ``max_epochs``, ``max_iters``, ``val_interval``,
  ``num_classes`` positive integers (``num_classes`` may be a dict of them, one per
  head); ``num_workers`` a non-negative integer;
- optimiser numbers: ``lr``, ``weight_decay``, ``momentum`` finite and >= 0;
- sizes: ``width_mult`` a finite number > 0; image sizes in pixels (``input_size``,
  ``crop_size``, a transform's ``height``, ``width``, ``min_height``,
  ``min_width``, ``max_size``, ``size``) a positive integer or a list of them;
- loss weights (``loss_weight``, each value of ``loss_weights``) finite and >= 0;
- ``log_level`` a name of a logging level;
- fractions in [0, 1]: ``score_threshold``, ``nms_iou_threshold``,
  ``iou_threshold``, ``dropout``, ``label_smoothing``.

``None`` passes (it means "not set" for every one of them). For
``--cfg-options`` :func:`check_option_types` also refuses a value of another
kind than the config's own: a word where the config has a number
(``'1e-3e' is not a number (the config has 0.004)``) or a boolean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from mtvision.errors import ConfigError

__all__ = ["check_config_values", "check_option_text", "check_option_types"]

Source = Callable[[str], str]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _non_negative(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value >= 0


def _positive(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


def _fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _size(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return bool(value) and all(_positive_int(side) for side in value)
    return _positive_int(value)


def _class_counts(value: Any) -> bool:
    """A class count, or one per head (``mobilenet_v2_multitask``'s ``num_classes=dict(...)``)."""
    if isinstance(value, Mapping):
        return bool(value) and all(_positive_int(count) for count in value.values())
    return _positive_int(value)


def _weights(value: Any) -> bool:
    return isinstance(value, Mapping) and all(_non_negative(w) for w in value.values())


#: key name -> (the check, what it expects).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(
        ("batch_size", "max_epochs", "max_iters", "val_interval"),
        (_positive_int, "a positive integer"),
    ),
    "num_classes": (_class_counts, "a positive integer (or a dict of them, head name -> count)"),
    "num_workers": (_non_negative_int, "an integer >= 0"),
    **dict.fromkeys(
        ("lr", "weight_decay", "momentum", "loss_weight"), (_non_negative, "a finite number >= 0")
    ),
    "loss_weights": (_weights, "a dict of finite numbers >= 0 (head name -> weight)"),
    "width_mult": (_positive, "a finite number > 0"),
    "log_level": (
        lambda value: value in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        "one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'",
    ),
    **dict.fromkeys(
        (
            "input_size",
            "crop_size",
            "height",
            "width",
            "min_height",
            "min_width",
            "max_size",
            "size",
        ),
        (_size, "a positive integer (or a list of them, in pixels)"),
    ),
    **dict.fromkeys(
        ("score_threshold", "nms_iou_threshold", "iou_threshold", "dropout", "label_smoothing"),
        (_fraction, "a number in [0, 1]"),
    ),
}


def check_config_values(cfg: Any, source: str | Source) -> None:
    """Raise :class:`ConfigError` for the first value of ``cfg`` (a ``Config`` or a
    dict), at any depth, that its
    key's meaning rules out (see the module docstring).

    ``source`` starts the message: the config file, or a function from the key's
    path to where it came from (``--cfg-options KEY=VALUE``).
    """
    source_of = source if callable(source) else lambda path: source
    for path, key, value in _walk(dict(cfg.items()), ""):
        rule = _RULES.get(key)
        if rule is not None and value is not None and not rule[0](value):
            raise ConfigError(f"{source_of(path)}: '{path}' must be {rule[1]}, got {value!r}")


def _walk(value: Any, path: str):
    """(path, key, value) of every dict entry below ``value``, lists included."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                item_path = f"{path}.{key}" if path else key
                yield item_path, key, item
                yield from _walk(item, item_path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


_MISSING = object()


def _lookup(cfg: Any, dotted: str) -> Any:
    """The value at ``dotted`` (``a.b.0.c``, digits index lists, as mmengine merges)."""
    current = cfg if isinstance(cfg, Mapping) else dict(cfg.items())  # a Config is no Mapping
    for part in dotted.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def check_option_types(cfg: Any, cfg_options: Mapping) -> None:
    """Raise :class:`ConfigError` for an option whose value is a word where ``cfg``
    (before the options are merged) holds a number or a boolean.

    ``--cfg-options`` values are parsed by mmengine's ``DictAction``: what does not
    read as an int, a float, a bool or ``None`` stays a string, so a typo in a
    number (``1e-3e``) arrives as text.
    """
    for option, value in cfg_options.items():
        if not isinstance(value, str):
            continue
        current = _lookup(cfg, option)
        if _is_number(current):
            raise ConfigError(
                f"--cfg-options {option}={value}: {value!r} is not a number "
                f"(the config has {current!r})"
            )
        if isinstance(current, bool):
            raise ConfigError(
                f"--cfg-options {option}={value}: {value!r} is not True or False "
                f"(the config has {current!r})"
            )


_CLOSING = {"[": "]", "(": ")"}


def check_option_text(text: str) -> None:
    """Raise :class:`ConfigError` unless ``text`` (one ``--cfg-options`` word) is
    ``KEY=VALUE`` with a key and balanced brackets in the value."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ConfigError(f"--cfg-options {text}: expected KEY=VALUE")
    open_brackets: list[str] = []
    for char in value:
        if char in _CLOSING:
            open_brackets.append(char)
        elif char in _CLOSING.values():
            if not open_brackets or _CLOSING[open_brackets.pop()] != char:
                raise ConfigError(f"--cfg-options {text}: unmatched '{char}'")
    if open_brackets:
        raise ConfigError(f"--cfg-options {text}: unclosed '{open_brackets[-1]}'")
