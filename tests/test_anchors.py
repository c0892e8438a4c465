"""SSD anchors: hand-computed boxes on tiny maps, counts at 320x320, torchvision parity."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator as TorchvisionBoxes
from torchvision.models.detection.image_list import ImageList

from mtvision.ops.anchors import DefaultBoxGenerator, SSDAnchorGenerator, linear_scales

MAPS_AT_320 = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]


def test_linear_scales() -> None:
    assert linear_scales(6, 0.2, 0.95) == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])
    with pytest.raises(ValueError, match="num_layers"):
        linear_scales(1, 0.2, 0.95)


def test_tf_default_box_shapes() -> None:
    generator = SSDAnchorGenerator()
    assert generator.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
    torch.testing.assert_close(
        torch.tensor(generator.box_shapes[0]), torch.tensor([(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)])
    )
    expected_layer1 = [(0.35, 1.0), (0.35, 2.0), (0.35, 0.5), (0.35, 3.0), (0.35, 1 / 3)]
    expected_layer1.append((math.sqrt(0.35 * 0.5), 1.0))
    torch.testing.assert_close(torch.tensor(generator.box_shapes[1]), torch.tensor(expected_layer1))
    # The last layer interpolates towards s_K = 1.
    assert generator.box_shapes[5][-1] == pytest.approx((math.sqrt(0.95), 1.0))


def test_tf_anchors_by_hand_on_a_2x2_and_a_1x1_map() -> None:
    # scales (0.2, 0.25, 1.0); layer 0 reduced to (0.1, 1), (0.2, 2), (0.2, 1/2);
    # layer 1: (0.25, 1), (0.25, 4), interpolated (sqrt(0.25 * 1) = 0.5, 1).
    generator = SSDAnchorGenerator(
        num_layers=2, min_scale=0.2, max_scale=0.25, aspect_ratios=(1, 4)
    )
    level0, level1 = generator.grid_anchors([(2, 2), (1, 1)], image_size=(100, 100))
    assert level0.shape == (2 * 2 * 3, 4) and level1.shape == (3, 4)
    long, short = 20 * math.sqrt(2) / 2, 20 / math.sqrt(2) / 2  # half sides of the 2:1 box
    # Cell (0, 0) is centred at (25, 25) pixels: (0 + 0.5) / 2 * 100.
    expected_cell00 = [
        [20, 20, 30, 30],
        [25 - long, 25 - short, 25 + long, 25 + short],
        [25 - short, 25 - long, 25 + short, 25 + long],
    ]
    torch.testing.assert_close(level0[:3], torch.tensor(expected_cell00), atol=1e-4, rtol=0)
    # Row-major cells, boxes fastest: rows 3..5 are cell (0, 1) at (75, 25), 6..8 cell (1, 0).
    torch.testing.assert_close(level0[3], torch.tensor([70.0, 20, 80, 30]))
    torch.testing.assert_close(level0[6], torch.tensor([20.0, 70, 30, 80]))
    torch.testing.assert_close(level0[9], torch.tensor([70.0, 70, 80, 80]))
    expected_level1 = [[37.5, 37.5, 62.5, 62.5], [25, 43.75, 75, 56.25], [25, 25, 75, 75]]
    torch.testing.assert_close(level1, torch.tensor(expected_level1))


def test_non_square_inputs_tf_uses_the_shorter_side_torchvision_each_side() -> None:
    image_size = (100, 200)  # H, W
    tf = SSDAnchorGenerator(num_layers=2, min_scale=0.2, max_scale=0.25, aspect_ratios=(1, 4))
    (_, tf_level1) = tf.grid_anchors([(1, 2), (1, 1)], image_size)
    # 0.25 * min(100, 200) = 25 px square, centred at (100, 50).
    torch.testing.assert_close(tf_level1[0], torch.tensor([87.5, 37.5, 112.5, 62.5]))

    tv = DefaultBoxGenerator(aspect_ratios=[[2]], min_ratio=0.2, max_ratio=0.95, scales=[0.25, 1.0])
    (tv_level0,) = tv.grid_anchors([(1, 1)], image_size)
    # 0.25 * W = 50 wide, 0.25 * H = 25 high; the second box is sqrt(0.25) = 0.5 of each side.
    torch.testing.assert_close(tv_level0[0], torch.tensor([75.0, 37.5, 125, 62.5]))
    torch.testing.assert_close(tv_level0[1], torch.tensor([50.0, 25, 150, 75]))


def test_anchor_counts_per_level_at_320() -> None:
    tf = SSDAnchorGenerator()
    counts = [len(level) for level in tf.grid_anchors(MAPS_AT_320, (320, 320))]
    assert counts == [20 * 20 * 3, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 6, 2 * 2 * 6, 1 * 1 * 6]
    assert sum(counts) == 20 * 20 * 3 + 6 * (100 + 25 + 9 + 4 + 1) == 2034
    assert tf(MAPS_AT_320, (320, 320)).shape == (2034, 4)

    tv = DefaultBoxGenerator()
    assert tv.num_anchors_per_location() == [6] * 6
    assert tv(MAPS_AT_320, (320, 320)).shape == (6 * (400 + 100 + 25 + 9 + 4 + 1), 4) == (3234, 4)


@pytest.mark.parametrize(
    "image_size, feature_sizes",
    [
        ((320, 320), MAPS_AT_320),
        ((256, 384), [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]),
    ],
)
def test_default_box_generator_matches_torchvision(image_size, feature_sizes) -> None:
    theirs = TorchvisionBoxes([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    images = ImageList(torch.zeros(1, 3, *image_size), [image_size])
    feature_maps = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    (expected,) = theirs(images, feature_maps)
    ours = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    assert ours.num_anchors_per_location() == theirs.num_anchors_per_location()
    torch.testing.assert_close(ours(feature_sizes, image_size), expected, atol=1e-4, rtol=0)


def test_every_anchor_is_centred_on_its_cell() -> None:
    anchors = SSDAnchorGenerator()(MAPS_AT_320, (320, 320))
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    # Level 2 (5x5 map, 6 boxes) starts after 1200 + 600 anchors; stride 64 px.
    level2 = centres[1800:1950].view(5, 5, 6, 2)
    expected = torch.arange(5.0) * 64 + 32
    torch.testing.assert_close(level2[..., 0], expected.view(1, 5, 1).expand(5, 5, 6))
    torch.testing.assert_close(level2[..., 1], expected.view(5, 1, 1).expand(5, 5, 6))


def test_wrong_number_of_feature_maps_is_an_error() -> None:
    with pytest.raises(ValueError, match="6 layers of box shapes but got 5 feature maps"):
        SSDAnchorGenerator()(MAPS_AT_320[:5], (320, 320))
    with pytest.raises(ValueError, match="scales needs one entry per layer"):
        DefaultBoxGenerator([[2]] * 2, scales=[0.2, 0.5])
