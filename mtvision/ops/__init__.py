"""Ops as plain functions and small classes: anchors, box coding, matching, NMS, resizing."""

from mtvision.ops.anchors import (
    DefaultBoxGenerator,
    GridAnchorGenerator,
    SSDAnchorGenerator,
    linear_scales,
)
from mtvision.ops.box_coder import BoxCoder
from mtvision.ops.matcher import BACKGROUND, SSDMatcher
from mtvision.ops.nms import class_aware_nms
from mtvision.ops.resize import resize
from mtvision.ops.ssd_postprocess import decode_detections

__all__ = [
    "BACKGROUND",
    "BoxCoder",
    "DefaultBoxGenerator",
    "GridAnchorGenerator",
    "SSDAnchorGenerator",
    "SSDMatcher",
    "class_aware_nms",
    "decode_detections",
    "linear_scales",
    "resize",
]
