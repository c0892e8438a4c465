"""Weights that make output comparisons meaningful for randomly initialised networks."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def randomize_batch_norms_(model: nn.Module, seed: int, input_size: int = 96) -> nn.Module:
    """Give every BatchNorm real statistics, then perturb them and its affine parameters.

    With a fresh init (weight 1, bias 0, mean 0, var 1) activations shrink layer
    by layer, so logits are ~1e-9 and barely depend on the input: comparing two
    models' outputs (parity with torchvision, ONNX vs torch) would then accept a
    wrongly wired model. Statistics measured on one random (4, 3, S, S) batch keep
    every layer's output of order 1 and input-dependent; the perturbation makes
    each BatchNorm distinct. Works in place, returns ``model`` in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for module in batch_norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average over the calibration batch
    model.train()
    model(torch.randn(4, 3, input_size, input_size, generator=generator))
    for module in batch_norms:
        module.momentum = 0.1
        channels = module.num_features
        module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
        module.bias.copy_(torch.randn(channels, generator=generator) * 0.2)
        std = module.running_var.sqrt()
        module.running_mean.add_(torch.randn(channels, generator=generator) * 0.2 * std)
        module.running_var.mul_(torch.rand(channels, generator=generator) + 0.5)
    return model.eval()
