"""What a backbone tap is: a name, a channel count and an output stride."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSpec:
    """One named feature map a backbone can return.

    Attributes:
        name: key of the tap in the backbone's output dict.
        channels: number of channels C of the (N, C, H, W) map.
        stride: total downsampling of the map relative to the input: an input of
            size (H, W) gives a map of size (ceil(H / stride), ceil(W / stride)).
    """

    name: str
    channels: int
    stride: int


def select_specs(specs: list[FeatureSpec], names: list[str] | tuple[str, ...]) -> list[FeatureSpec]:
    """Return the specs named in ``names``, in that order; unknown names raise ``KeyError``."""
    by_name = {spec.name: spec for spec in specs}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise KeyError(f"unknown feature tap(s) {unknown}; available: {list(by_name)}")
    return [by_name[name] for name in names]
