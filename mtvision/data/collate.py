"""Batch packed samples for the data loader, registered in ``FUNCTIONS``."""

from __future__ import annotations

from collections.abc import Sequence

from mtvision.registry import FUNCTIONS

__all__ = ["collate_samples"]


@FUNCTIONS.register_module()
def collate_samples(batch: Sequence[dict]) -> dict:
    """Gather ``PackInputs`` outputs into lists, without stacking.

    Images in a batch may differ in size (detection, segmentation, eval
    without a resize); the model's data preprocessor stacks and pads them, so
    collation only gathers. Configs select it by object,
    ``collate_fn=dict(type=collate_samples)``, or by scoped name,
    ``collate_fn=dict(type="mtvision.collate_samples")``: mmengine's Runner
    looks collate functions up with ``FUNCTIONS.get`` on its root registry,
    which ignores ``default_scope``, so the bare name is not found.

    Args:
        batch: samples ``{"inputs": Tensor (3, H, W) uint8, "data_samples": dict}``.

    Returns:
        ``{"inputs": list[Tensor], "data_samples": list[dict]}`` in batch order.
    """
    return {
        "inputs": [sample["inputs"] for sample in batch],
        "data_samples": [sample["data_samples"] for sample in batch],
    }
