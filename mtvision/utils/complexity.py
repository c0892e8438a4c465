"""Model size and cost: parameter count and multiply-adds measured by torch's FLOP counter."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared ones once); ``trainable_only`` skips frozen ones."""
    return sum(
        parameter.numel()
        for parameter in model.parameters()
        if parameter.requires_grad or not trainable_only
    )


def count_multiply_adds(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> int:
    """Multiply-adds of one eval-mode forward pass on a zero input of ``input_shape``.

    Measured with ``torch.utils.flop_counter.FlopCounterMode``, which counts
    convolutions and matrix products (linear layers) at 2 FLOPs per multiply-add;
    the result is FLOPs / 2, the unit the MobileNet papers quote. Bias additions,
    norms, activations and pooling are not counted, as in the papers.
    """
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
