"""What every head shares: its task, taps selected by name, ``predict`` as post-processing
then the mapping to original pixels, ``test_cfg`` checking, and which samples carry its
annotation.

A data sample is a plain dict (``label``; ``boxes`` + ``labels``; ``mask``; ``meta``).
A sample may lack a head's annotation (a multi-task batch mixes datasets): that head
then takes no loss from it. When no sample of the batch has it, the head's loss is
:func:`zero_loss`, an exact 0 that still depends on every output, so every parameter
behind the head takes part in the backward pass (DistributedDataParallel expects it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmengine.model import BaseModule
from torch import Tensor

from mtvision.layers.feature_spec import FeatureSpec, select_specs
from mtvision.tasks import Task

__all__ = ["Head", "annotated_samples", "merge_test_cfg", "sample_source", "zero_loss"]


class Head(BaseModule):
    """Base of mtvision's heads (an mmengine ``BaseModule``).

    A subclass sets the class attributes ``task`` (its :class:`~mtvision.tasks.Task`
    adapter, e.g. ``DETECTION``) and ``in_features`` (default taps), selects its specs
    in ``__init__`` with :meth:`select_taps`, and implements ``forward``, ``loss``,
    ``postprocess(outputs, input_size)`` (tensor operations that trace) and
    ``to_original(results, data_samples)`` (the only step that reads ``meta``).
    """

    task: Task
    in_features: tuple[str, ...] = ()

    def select_taps(
        self,
        feature_info: Sequence[FeatureSpec],
        in_features: Sequence[str] | None,
        count: int | None = None,
    ) -> list[FeatureSpec]:
        """Set ``self.in_features`` (given, else the class default) and return their specs.

        Raises:
            ValueError: ``count`` is set and another number of taps is named, or a
                name is not one of ``feature_info``'s.
        """
        self.in_features = tuple(in_features or type(self).in_features)
        if count is not None and len(self.in_features) != count:
            taps = "one tap" if count == 1 else f"{count} taps"
            raise ValueError(
                f"{type(self).__name__} reads {taps}, got in_features={self.in_features}"
            )
        return select_specs(list(feature_info), self.in_features)

    def postprocess(
        self, outputs: dict[str, Tensor], input_size: tuple[int, int] | None
    ) -> dict[str, Tensor]:
        raise NotImplementedError

    def to_original(self, results: dict[str, Tensor], data_samples: Sequence[dict]) -> list[dict]:
        raise NotImplementedError

    def predict(
        self,
        outputs: dict[str, Tensor],
        data_samples: Sequence[dict],
        input_size: tuple[int, int] | None = None,
    ) -> list[dict]:
        """:meth:`postprocess`, then :meth:`to_original`: one dict per image."""
        return self.to_original(self.postprocess(outputs, input_size), data_samples)


def merge_test_cfg(test_cfg: Mapping | None, defaults: Mapping, owner: str) -> dict:
    """A head's ``test_cfg``: ``defaults`` updated with ``test_cfg``.

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


def annotated_samples(
    data_samples: Sequence[dict] | None, keys: Sequence[str], batch_size: int, head: str
) -> list[int]:
    """Indices of the samples that carry every key of ``keys``.

    Raises:
        ValueError: the batch has no list of one data sample per image, or a sample
            carries only some of ``keys`` (e.g. ``boxes`` without ``labels``).
    """
    if data_samples is None or len(data_samples) != batch_size:
        raise ValueError(
            f"{head}: mode='loss' needs one data sample per image ({batch_size}), got "
            f"{None if data_samples is None else len(data_samples)}"
        )
    indices = []
    for index, sample in enumerate(data_samples):
        present = [key for key in keys if key in sample]
        if present and len(present) != len(keys):
            raise ValueError(
                f"{sample_source(sample)}: a sample with {present} also needs "
                f"{[key for key in keys if key not in sample]} ({head})"
            )
        if present:
            indices.append(index)
    return indices


def sample_source(sample: dict) -> str:
    """The file a data sample came from, for error messages."""
    meta = sample.get("meta", {})
    for key in ("seg_path", "img_path"):
        if key in meta:
            return str(meta[key])
    if "sample_idx" in meta:
        return f"sample {meta['sample_idx']}"
    return "a data sample without meta"


def zero_loss(outputs: dict[str, Tensor]) -> Tensor:
    """An exact 0 that depends on every tensor of ``outputs`` (their gradients are 0)."""
    return sum(output.reshape(-1)[:0].sum() for output in outputs.values())
