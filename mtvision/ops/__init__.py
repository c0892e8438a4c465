"""Ops as plain functions and small classes: anchors, box coding, matching, resizing."""

from mtvision.ops.anchors import (
    DefaultBoxGenerator,
    GridAnchorGenerator,
    SSDAnchorGenerator,
    linear_scales,
)
from mtvision.ops.box_coder import BoxCoder
from mtvision.ops.matcher import BACKGROUND, SSDMatcher
from mtvision.ops.resize import resize

__all__ = [
    "BACKGROUND",
    "BoxCoder",
    "DefaultBoxGenerator",
    "GridAnchorGenerator",
    "SSDAnchorGenerator",
    "SSDMatcher",
    "linear_scales",
    "resize",
]
