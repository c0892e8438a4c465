"""SSD matcher: threshold, forced best anchors, ties, empty ground truth."""

from __future__ import annotations

import pytest
import torch

from mtvision.ops.matcher import BACKGROUND, SSDMatcher

# Four 10x10 anchors in a row, 10 px apart, and one large anchor over all of them.
ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [10.0, 0.0, 20.0, 10.0],
        [20.0, 0.0, 30.0, 10.0],
        [30.0, 0.0, 40.0, 10.0],
        [0.0, 0.0, 40.0, 40.0],
    ]
)


def test_no_ground_truth_gives_all_background() -> None:
    matches = SSDMatcher()(torch.zeros(0, 4), ANCHORS)
    assert matches.dtype == torch.int64
    assert matches.tolist() == [BACKGROUND] * 5


def test_threshold_is_inclusive() -> None:
    # A box covering anchors 0 and 1: IoU 100 / 200 = 0.5 with each, 200 / 1600 with the
    # big anchor.
    gt = torch.tensor([[0.0, 0.0, 20.0, 10.0]])
    assert SSDMatcher(0.5)(gt, ANCHORS).tolist() == [0, 0, -1, -1, -1]
    # Above the threshold only the forced best anchor (anchor 0, lowest index on the tie).
    assert SSDMatcher(0.51)(gt, ANCHORS).tolist() == [0, -1, -1, -1, -1]


def test_box_below_threshold_gets_exactly_its_best_anchor() -> None:
    # Overlap with anchor 2 is 4 x 10 px: IoU 40 / 160 = 0.25; with anchor 3 60 / 140 = 0.43;
    # with the big anchor 100 / 1600.
    gt = torch.tensor([[26.0, 0.0, 36.0, 10.0]])
    matcher = SSDMatcher(0.5)
    matches = matcher(gt, ANCHORS)
    assert matches.tolist() == [-1, -1, -1, 0, -1]
    assert int((matches >= 0).sum()) == 1


def test_each_ground_truth_keeps_its_forced_anchor_over_a_threshold_match() -> None:
    # gt 0 matches anchors 0 and 1 (IoU 0.5 each); gt 1 is a small box whose best anchor
    # is anchor 1 (IoU 0.25 < 0.5): the forced match takes anchor 1 from gt 0.
    gt = torch.tensor([[0.0, 0.0, 20.0, 10.0], [12.0, 2.0, 17.0, 7.0]])
    matches = SSDMatcher(0.5)(gt, ANCHORS)
    assert matches.tolist() == [0, 1, -1, -1, -1]


def test_ground_truths_forcing_the_same_anchor_leave_it_to_the_higher_index() -> None:
    box, big = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0]
    matches = SSDMatcher(0.5)(torch.tensor([box, box]), ANCHORS)
    assert matches.tolist() == [1, -1, -1, -1, -1]
    matches = SSDMatcher(0.5)(torch.tensor([big, box, big]), ANCHORS)
    assert matches.tolist() == [1, -1, -1, -1, 2]


def test_anchor_tied_between_ground_truths_above_threshold_goes_to_the_lower_index() -> None:
    # Anchor 0 has IoU 90 / 110 with both boxes; each box's own best anchor is its copy.
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [-1.0, 0.0, 9.0, 10.0]])
    gt = torch.tensor([[1.0, 0.0, 11.0, 10.0], [-1.0, 0.0, 9.0, 10.0]])
    assert SSDMatcher(0.5)(gt, anchors).tolist() == [0, 0, 1]


def test_ground_truth_overlapping_no_anchor_is_not_forced() -> None:
    gt = torch.tensor([[100.0, 100.0, 110.0, 110.0], [0.0, 0.0, 10.0, 10.0]])
    assert SSDMatcher()(gt, ANCHORS).tolist() == [1, -1, -1, -1, -1]


def test_invalid_threshold() -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        SSDMatcher(0.0)
