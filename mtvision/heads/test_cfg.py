"""A head's ``test_cfg``: its post-processing settings, checked against the keys it knows."""

from __future__ import annotations

from collections.abc import Mapping


def merge_test_cfg(test_cfg: Mapping | None, defaults: Mapping, owner: str) -> dict:
    """``defaults`` updated with ``test_cfg``.

    Raises:
        ValueError: ``test_cfg`` has a key ``defaults`` lacks (a typo such as
            ``nms_threshold`` would otherwise be ignored); the message names
            ``owner`` and the known keys.
    """
    given = dict(test_cfg or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{owner}: unknown test_cfg key(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}
