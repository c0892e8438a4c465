"""SSD anchors (default boxes): a fixed set of box shapes tiled over every feature-map cell.

Two recipes, selectable by config (``anchor_generator=dict(type=...)`` of ``SSDLiteHead``):

- :class:`SSDAnchorGenerator` (default): the TF object detection API's
  ``ssd_anchor_generator`` used by the paper's ssdlite_mobilenet_v2 (scales 0.2..0.95
  over 6 layers, aspect ratios {1, 2, 1/2, 3, 1/3} plus an interpolated 1:1 box,
  3 boxes on the lowest layer).
- :class:`DefaultBoxGenerator`: torchvision's ``DefaultBoxGenerator`` as its
  ``ssdlite320_mobilenet_v3_large`` builds it (``[[2, 3]] * 6``, 6 boxes everywhere).

Both describe each layer's boxes as ``(scale, aspect_ratio)`` pairs, ``aspect_ratio``
being width / height: a box has normalised width ``scale * sqrt(aspect_ratio)`` and
height ``scale / sqrt(aspect_ratio)``. How a normalised size becomes pixels is where
the two differ, and it only matters for non-square inputs of size (H, W):

- TF: both sides are multiplied by ``min(H, W)`` (TF shrinks its base anchor size
  along the longer side so that a 1:1 anchor stays square in pixels),
- torchvision: the width by W and the height by H (a 1:1 anchor takes the image's
  aspect ratio); it also clips normalised widths and heights to at most 1.

Centres are the same in both: cell (i, j) of an (h, w) map has its centre at
``((j + 0.5) / w * W, (i + 0.5) / h * H)`` pixels, i.e. anchors tile the whole input
whatever its size. Anchors are returned as xyxy pixels of the (padded) input
tensor, ordered location-major (row, column) and box shape fastest, which is the
order of the head's predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtvision.registry import MODELS

__all__ = ["DefaultBoxGenerator", "GridAnchorGenerator", "SSDAnchorGenerator", "linear_scales"]

SHORTER_SIDE = "shorter_side"
EACH_SIDE = "each_side"


def linear_scales(num_layers: int, min_scale: float, max_scale: float) -> list[float]:
    """SSD's scales ``s_k = min + (max - min) * k / (K - 1)`` for k < K, plus ``s_K = 1.0``.

    The extra last entry only serves the interpolated scale ``sqrt(s_k * s_{k+1})``
    of the last layer.
    """
    if num_layers < 2:
        raise ValueError(f"num_layers must be >= 2, got {num_layers}")
    step = (max_scale - min_scale) / (num_layers - 1)
    return [min_scale + step * k for k in range(num_layers)] + [1.0]


class GridAnchorGenerator:
    """Tile per-layer box shapes over feature maps; base of the two SSD recipes.

    Args:
        box_shapes: one list per feature map of ``(scale, aspect_ratio)`` pairs,
            sizes relative to the image (see module docstring).
        size_reference: ``"shorter_side"`` (TF: sides scale with min(H, W)) or
            ``"each_side"`` (torchvision: width with W, height with H).
        clip_sizes: clip normalised widths and heights to [0, 1] (torchvision).
    """

    def __init__(
        self,
        box_shapes: Sequence[Sequence[tuple[float, float]]],
        size_reference: str = SHORTER_SIDE,
        clip_sizes: bool = False,
    ) -> None:
        if size_reference not in (SHORTER_SIDE, EACH_SIDE):
            raise ValueError(
                f"size_reference must be {SHORTER_SIDE!r} or {EACH_SIDE!r}, got {size_reference!r}"
            )
        if not box_shapes or any(len(shapes) == 0 for shapes in box_shapes):
            raise ValueError(f"every layer needs at least one box shape, got {box_shapes}")
        self.box_shapes = [[(float(s), float(r)) for s, r in shapes] for shapes in box_shapes]
        self.size_reference = size_reference
        self.clip_sizes = clip_sizes
        # (width, height) of every box shape in normalised units, per layer: (A_l, 2).
        self._normalised_sizes = []
        for shapes in self.box_shapes:
            sizes = torch.tensor(
                [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in shapes], dtype=torch.float64
            )
            self._normalised_sizes.append(sizes.clamp(0, 1) if clip_sizes else sizes)

    @property
    def num_layers(self) -> int:
        return len(self.box_shapes)

    def num_anchors_per_location(self) -> list[int]:
        """Boxes per feature-map cell, one entry per layer."""
        return [len(shapes) for shapes in self.box_shapes]

    def box_sizes(self, image_size: tuple[int, int]) -> list[Tensor]:
        """Per layer, (A_l, 2) float64 (width, height) in pixels for an input of (H, W)."""
        height, width = image_size
        if self.size_reference == SHORTER_SIDE:
            factor = torch.tensor([min(height, width)] * 2, dtype=torch.float64)
        else:
            factor = torch.tensor([width, height], dtype=torch.float64)
        return [sizes * factor for sizes in self._normalised_sizes]

    def grid_anchors(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        image_size: tuple[int, int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> list[Tensor]:
        """Anchors of each layer: (h_l * w_l * A_l, 4) xyxy pixels of an (H, W) input.

        Args:
            feature_sizes: (h_l, w_l) of every feature map, one per layer.
            image_size: (H, W) of the input tensor the maps were computed from.
        """
        if len(feature_sizes) != self.num_layers:
            raise ValueError(
                f"{type(self).__name__} has {self.num_layers} layers of box shapes "
                f"but got {len(feature_sizes)} feature maps {list(feature_sizes)}"
            )
        height, width = image_size
        anchors = []
        for (map_h, map_w), sizes in zip(feature_sizes, self.box_sizes(image_size), strict=True):
            # float64 keeps the pixel coordinates exact to float32 precision.
            centre_x = (torch.arange(map_w, dtype=torch.float64) + 0.5) / map_w * width
            centre_y = (torch.arange(map_h, dtype=torch.float64) + 0.5) / map_h * height
            grid_y, grid_x = torch.meshgrid(centre_y, centre_x, indexing="ij")
            centres = torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 1, 2)  # (h*w, 1, 2)
            half = sizes.reshape(1, -1, 2) / 2  # (1, A_l, 2)
            boxes = torch.cat((centres - half, centres + half), dim=-1)  # (h*w, A_l, 4)
            anchors.append(boxes.reshape(-1, 4).to(device=device, dtype=dtype))
        return anchors

    def __call__(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        image_size: tuple[int, int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """All layers' anchors concatenated: (sum_l h_l * w_l * A_l, 4) xyxy pixels."""
        return torch.cat(self.grid_anchors(feature_sizes, image_size, device, dtype), dim=0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(box_shapes={self.box_shapes}, "
            f"size_reference={self.size_reference!r}, clip_sizes={self.clip_sizes})"
        )


@MODELS.register_module()
class SSDAnchorGenerator(GridAnchorGenerator):
    """The TF object detection API's ``ssd_anchor_generator`` (ssdlite_mobilenet_v2 config).

    Layer k < K gets scale ``s_k`` (:func:`linear_scales`) with every ratio in
    ``aspect_ratios``, plus a box of scale ``sqrt(s_k * s_{k+1})`` and ratio
    ``interpolated_scale_aspect_ratio`` (``s_K = 1``). With
    ``reduce_boxes_in_lowest_layer`` layer 0 instead gets ``(0.1, 1), (s_0, 2),
    (s_0, 1/2)``. Default: 3 boxes on layer 0, 6 on the others, so a 320x320 input
    with maps 20, 10, 5, 3, 2, 1 has 20*20*3 + 6*(100 + 25 + 9 + 4 + 1) = 2034 anchors.
    Box sides are ``scale * min(H, W)`` times ``sqrt(ratio)`` (width) or
    ``1 / sqrt(ratio)`` (height) in pixels; anchors are not clipped.
    """

    def __init__(
        self,
        num_layers: int = 6,
        min_scale: float = 0.2,
        max_scale: float = 0.95,
        aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0),
        interpolated_scale_aspect_ratio: float = 1.0,
        reduce_boxes_in_lowest_layer: bool = True,
    ) -> None:
        scales = linear_scales(num_layers, min_scale, max_scale)
        box_shapes = []
        for layer in range(num_layers):
            scale, next_scale = scales[layer], scales[layer + 1]
            if layer == 0 and reduce_boxes_in_lowest_layer:
                shapes = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
            else:
                shapes = [(scale, float(ratio)) for ratio in aspect_ratios]
                if interpolated_scale_aspect_ratio > 0:
                    shapes.append(
                        (math.sqrt(scale * next_scale), float(interpolated_scale_aspect_ratio))
                    )
            box_shapes.append(shapes)
        super().__init__(box_shapes, size_reference=SHORTER_SIDE, clip_sizes=False)
        self.scales = scales


@MODELS.register_module()
class DefaultBoxGenerator(GridAnchorGenerator):
    """torchvision's ``DefaultBoxGenerator`` (``anchor_utils.py``), same arguments and output.

    Per layer k: ``(s_k, 1)``, ``(sqrt(s_k * s_{k+1}), 1)``, then for every ratio r in
    ``aspect_ratios[k]`` the pair ``(s_k, r), (s_k, 1 / r)``, so ``[[2, 3]] * 6`` gives
    6 boxes per cell on every layer (3234 anchors at 320x320). Widths scale with W and
    heights with H, clipped to the image size when ``clip`` (torchvision clips the
    normalised sizes, not the boxes). torchvision's ``steps`` (fixed centre spacing)
    is not supported: centres always spread evenly over the input.
    """

    def __init__(
        self,
        aspect_ratios: Sequence[Sequence[float]] = ((2, 3),) * 6,
        min_ratio: float = 0.2,
        max_ratio: float = 0.95,
        scales: Sequence[float] | None = None,
        clip: bool = True,
    ) -> None:
        num_layers = len(aspect_ratios)
        if scales is None:
            scales = linear_scales(num_layers, min_ratio, max_ratio)
        if len(scales) != num_layers + 1:
            raise ValueError(
                f"scales needs one entry per layer plus a last one ({num_layers + 1}), "
                f"got {len(scales)}: {list(scales)}"
            )
        box_shapes = []
        for layer, ratios in enumerate(aspect_ratios):
            scale = scales[layer]
            shapes = [(scale, 1.0), (math.sqrt(scale * scales[layer + 1]), 1.0)]
            for ratio in ratios:
                shapes += [(scale, float(ratio)), (scale, 1.0 / ratio)]
            box_shapes.append(shapes)
        super().__init__(box_shapes, size_reference=EACH_SIDE, clip_sizes=clip)
        self.scales = list(scales)
