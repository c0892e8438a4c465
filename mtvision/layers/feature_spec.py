"""What a backbone tap is (a name, a channel count and an output stride), and a
backbone's taps in depth order (:class:`FeatureInfo`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from mtvision.errors import ConfigError


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


class FeatureInfo(Sequence[FeatureSpec]):
    """A backbone's taps, shallow to deep: a read-only sequence of :class:`FeatureSpec`.

    Reads like the list it replaces (``for spec in feature_info``, ``feature_info[-1]``,
    ``len``, ``list(feature_info)``; a slice is a ``FeatureInfo``) and adds look-up by
    name (:meth:`get`, :meth:`select`) and the columns (:attr:`names`,
    :attr:`channels`, :attr:`strides`).

    The invariant, checked when built: tap names are unique and strides never
    decrease along depth (a deeper map is never finer). timm's ``FeatureInfo``
    checks the same of its reductions.

    Raises:
        ConfigError: (a ``ValueError``) a duplicate name or a decreasing stride,
            naming the taps involved.
    """

    def __init__(self, specs: Iterable[FeatureSpec] = ()) -> None:
        self._specs: tuple[FeatureSpec, ...] = tuple(specs)
        seen: set[str] = set()
        for index, spec in enumerate(self._specs):
            if spec.name in seen:
                raise ConfigError(
                    f"feature taps must have unique names; {spec.name!r} appears twice in "
                    f"{list(self.names)}"
                )
            seen.add(spec.name)
            if index and spec.stride < self._specs[index - 1].stride:
                previous = self._specs[index - 1]
                raise ConfigError(
                    f"feature tap strides must never decrease along depth: {spec.name!r} "
                    f"(stride {spec.stride}) comes after {previous.name!r} (stride "
                    f"{previous.stride}); strides {list(self.strides)}"
                )

    @overload
    def __getitem__(self, index: int) -> FeatureSpec: ...

    @overload
    def __getitem__(self, index: slice) -> FeatureInfo: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return FeatureInfo(self._specs[index])
        return self._specs[index]

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self._specs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FeatureInfo):
            return self._specs == other._specs
        if isinstance(other, (list, tuple)):
            return list(self._specs) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._specs)

    def __repr__(self) -> str:
        return f"FeatureInfo({list(self._specs)!r})"

    @property
    def names(self) -> tuple[str, ...]:
        """Tap names, shallow to deep."""
        return tuple(spec.name for spec in self._specs)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channel counts, shallow to deep."""
        return tuple(spec.channels for spec in self._specs)

    @property
    def strides(self) -> tuple[int, ...]:
        """Output strides, shallow to deep (never decreasing)."""
        return tuple(spec.stride for spec in self._specs)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self.names
        return item in self._specs

    def check_known(self, names: Iterable[str], what: str, hint: str = "") -> None:
        """Raise :class:`ConfigError` (a ``ValueError``) naming the ``names`` that are no
        tap here, as ``unknown <what> [...]; available: [...]<hint>``."""
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ConfigError(f"unknown {what} {unknown}; available: {list(self.names)}{hint}")

    def get(self, name: str) -> FeatureSpec:
        """The tap called ``name``.

        Raises:
            KeyError: no such tap; the message lists the taps there are.
        """
        for spec in self._specs:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown feature tap {name!r}; available: {list(self.names)}")

    def select(self, names: Iterable[str]) -> list[FeatureSpec]:
        """The taps named in ``names``, in that order; see :func:`select_specs`."""
        return select_specs(self, tuple(names))


def select_specs(specs: Iterable[FeatureSpec], names: Sequence[str]) -> list[FeatureSpec]:
    """Return the specs named in ``names``, in that order.

    Raises:
        KeyError: unknown names, listed with the available taps.
    """
    by_name = {spec.name: spec for spec in specs}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise KeyError(f"unknown feature tap(s) {unknown}; available: {list(by_name)}")
    return [by_name[name] for name in names]
