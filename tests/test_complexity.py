"""Parameter and multiply-add counters on modules whose cost is computed by hand."""

from __future__ import annotations

import torch
from torch import nn

from mtvision.utils.complexity import count_multiply_adds, count_parameters


class TinyNet(nn.Module):
    """conv 3->4 (3x3, pad 1) -> depthwise 4->4 (3x3, stride 2, pad 1) -> global pool -> linear 4->5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.depthwise = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(self.conv(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_count_parameters_by_hand() -> None:
    model = TinyNet()
    # conv 4*3*3*3 + 4 bias, depthwise 4*1*3*3, linear 5*4 + 5.
    assert count_parameters(model) == 108 + 4 + 36 + 20 + 5
    model.conv.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 36 + 20 + 5
    assert count_parameters(model) == 173


def test_count_multiply_adds_by_hand() -> None:
    model = TinyNet()
    # conv: 8x8 outputs x 4 channels x (3 in x 3 x 3) = 6912
    # depthwise: 4x4 outputs x 4 channels x (1 x 3 x 3) = 576
    # linear: 4 x 5 = 20
    assert count_multiply_adds(model, (1, 3, 8, 8)) == 6912 + 576 + 20
    assert count_multiply_adds(model, (2, 3, 8, 8)) == 2 * (6912 + 576 + 20)


def test_count_multiply_adds_restores_training_mode() -> None:
    model = TinyNet().train()
    count_multiply_adds(model, (1, 3, 8, 8))
    assert model.training
    model.eval()
    count_multiply_adds(model, (1, 3, 8, 8))
    assert not model.training
