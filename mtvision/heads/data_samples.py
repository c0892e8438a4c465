"""What heads read from data samples: which samples carry a head's annotation, and from where.

A data sample is a plain dict (``label``; ``boxes`` + ``labels``; ``mask``; ``meta``).
A sample may lack a head's annotation (a multi-task batch mixes datasets): that head
then takes no loss from it. When no sample of the batch has it, the head's loss is
:func:`zero_loss`, an exact 0 that still depends on every output, so every parameter
behind the head takes part in the backward pass (DistributedDataParallel expects it).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


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
