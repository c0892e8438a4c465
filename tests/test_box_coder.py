"""Box coder: hand-computed codes, round trip, torchvision parity, log-size clamp."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from mtvision.ops.box_coder import BoxCoder


def _random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    top_left = torch.rand(count, 2, generator=generator) * 200
    sizes = torch.rand(count, 2, generator=generator) * 100 + 1
    return torch.cat((top_left, top_left + sizes), dim=1)


def test_encode_by_hand() -> None:
    coder = BoxCoder()
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), 10 x 10
    box = torch.tensor([[1.0, 2.0, 21.0, 12.0]])  # centre (11, 7), 20 x 10
    codes = coder.encode(box, anchor)
    # dx = 10 * 6 / 10, dy = 10 * 2 / 10, dw = 5 * log(20 / 10), dh = 5 * log(1).
    torch.testing.assert_close(codes, torch.tensor([[6.0, 2.0, 5 * math.log(2.0), 0.0]]))
    torch.testing.assert_close(coder.decode(codes, anchor), box)


def test_round_trip_with_leading_batch_dimensions() -> None:
    generator = torch.Generator().manual_seed(0)
    coder = BoxCoder()
    boxes = _random_boxes(60, generator).view(3, 20, 4)
    anchors = _random_boxes(20, generator)
    codes = coder.encode(boxes, anchors.expand(3, 20, 4))
    assert codes.shape == (3, 20, 4)
    torch.testing.assert_close(coder.decode(codes, anchors), boxes, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 2.0, 3.0, 4.0)])
def test_matches_torchvision_box_coder(weights) -> None:
    generator = torch.Generator().manual_seed(1)
    boxes, anchors = _random_boxes(50, generator), _random_boxes(50, generator)
    ours, theirs = BoxCoder(weights), TorchvisionBoxCoder(weights)
    codes = ours.encode(boxes, anchors)
    torch.testing.assert_close(codes, theirs.encode_single(boxes, anchors))
    random_codes = torch.randn(50, 4, generator=generator)
    torch.testing.assert_close(
        ours.decode(random_codes, anchors), theirs.decode_single(random_codes, anchors)
    )


def test_decoded_log_size_is_clamped() -> None:
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    anchor = torch.tensor([[0.0, 0.0, 16.0, 8.0]])
    decoded = coder.decode(torch.tensor([[0.0, 0.0, 1e4, -1e4]]), anchor)
    width, height = decoded[0, 2] - decoded[0, 0], decoded[0, 3] - decoded[0, 1]
    # Width capped at exp(log(1000 / 16)) = 62.5 anchor widths; shrinking is not capped.
    assert width.item() == pytest.approx(1000.0)
    assert height.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(decoded).all()


def test_invalid_weights() -> None:
    with pytest.raises(ValueError, match="four positive numbers"):
        BoxCoder((10.0, 10.0, 5.0))
