"""mtvision.utils.boxes: one box rule, the same verdict for numbers, arrays and tensors,
and the same verdict where boxes enter (datasets, pipeline, detection loss)."""

import numpy as np
import pytest
import torch

from mtvision.data import coco_detection, transforms
from mtvision.errors import AnnotationError
from mtvision.utils.boxes import clip_boxes, first_invalid_box, valid_boxes

NAN, INF = float("nan"), float("inf")
IMAGE = (40, 30)  # width, height
# (box, keeps the rule without an image, keeps it inside the 40 x 30 image)
CASES = [
    ((0, 0, 40, 30), True, True),
    ((1.5, 2.5, 3.0, 4.0), True, True),
    ((5, 5, 5, 10), False, False),  # zero width
    ((5, 10, 8, 9), False, False),  # y2 < y1
    ((NAN, 0, 10, 10), False, False),
    ((0, 0, INF, 10), False, False),
    ((-INF, 0, 10, 10), False, False),
    ((-1, 0, 10, 10), True, False),  # leaves the image on the left
    ((0, 0, 41, 10), True, False),
    ((0, 0, 10, 31), True, False),
]


@pytest.mark.parametrize(("box", "valid", "inside"), CASES)
def test_numbers_arrays_and_tensors_get_the_same_verdict(box, valid, inside):
    assert isinstance(valid_boxes(box), bool) and valid_boxes(box) == valid
    assert bool(valid_boxes(box, IMAGE)) == inside
    array = np.array([box], np.float32)
    assert valid_boxes(array).tolist() == [valid]
    assert valid_boxes(array, IMAGE).tolist() == [inside]
    assert valid_boxes(torch.tensor([box], dtype=torch.float32), IMAGE).tolist() == [inside]


def test_first_invalid_box_and_clipping():
    boxes = np.array([box for box, *_ in CASES], np.float32)
    assert first_invalid_box(boxes) == 2
    assert first_invalid_box(torch.from_numpy(boxes)[[0, 1, 7, 6]]) == 3
    assert first_invalid_box(boxes[:2], IMAGE) is None
    assert first_invalid_box(np.zeros((0, 4), np.float32)) is None
    clipped = clip_boxes(boxes, IMAGE)
    assert clipped is not boxes and boxes[7, 0] == -1  # a copy
    np.testing.assert_array_equal(clipped[7], [0, 0, 10, 10])
    np.testing.assert_array_equal(clipped[6], [0, 0, 10, 10])  # -inf clipped to the edge
    assert np.isnan(clipped[4, 0])  # NaN stays and breaks the rule
    assert clip_boxes((-5.0, 2.0, 50.0, 31.0), IMAGE) == (0.0, 2.0, 40, 30)
    # One box as numbers and as an array: the same clipping.
    for box, *_ in CASES:
        as_numbers = np.array(clip_boxes(box, IMAGE), np.float32)
        np.testing.assert_array_equal(as_numbers, clip_boxes(np.array(box, np.float32), IMAGE))


def test_the_pipeline_and_the_coco_reader_apply_the_rule():
    image = np.zeros((IMAGE[1], IMAGE[0], 3), np.uint8)
    for box, _, inside in CASES:
        sample = {"image": image, "img_path": "a.jpg"}
        if inside:
            transforms._check_boxes_inside(np.array([box], np.float32), sample)
        else:
            with pytest.raises(AnnotationError, match=r"a.jpg: box 0 .* is empty or leaves"):
                transforms._check_boxes_inside(np.array([box], np.float32), sample)
    # A NaN bbox was kept before the rule had one home; COCO now drops it, named.
    assert coco_detection._clipped_xyxy([NAN, 0, 5, 5], *IMAGE) == ([], "not finite")
    assert coco_detection._clipped_xyxy([0, 0, 0, 5], *IMAGE)[1] == "non-positive size 0 x 5"
    assert coco_detection._clipped_xyxy([-3, 1, 10, 5], *IMAGE) == ([0.0, 1, 7, 6], "")
