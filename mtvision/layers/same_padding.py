"""TensorFlow's "SAME" padding, computed per input size (as timm's ``Conv2dSame``).

TF pads a convolution so that the output has ceil(size / stride) positions, and puts
the odd pixel of an odd total *after* the input: on an even input a 3x3 stride-2
convolution gets 0 rows/columns before and 1 after, where PyTorch's symmetric
``padding=1`` gives 1 and 1 and so samples every output one pixel up and left. On an
odd input both agree. Weights trained in TF (MobileNetV2, DeepLab, SSDLite from the
TF model zoos) only reproduce their outputs with TF's rule. Reference: the
``tf.nn.convolution`` docs ("SAME" padding) and TFLite's ``ComputePaddingHeightWidth``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PADDING_MODES", "SamePad2d", "needs_dynamic_padding", "same_padding"]

#: ``"symmetric"``: PyTorch's ``dilation * (kernel_size - 1) // 2`` on every side;
#: ``"same"``: TensorFlow's SAME rule, computed from each input's size.
PADDING_MODES = ("symmetric", "same")


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one spatial axis of ``size`` pixels under TF's SAME rule.

    The total is ``max((ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation
    + 1 - size, 0)``; ``before = total // 2``, the rest goes after.
    """
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def needs_dynamic_padding(kernel_size: int, stride: int, dilation: int = 1) -> bool:
    """Whether SAME padding depends on the input size (else it is the symmetric
    ``dilation * (kernel_size - 1) // 2``): any stride > 1, or an odd padding total."""
    return stride > 1 or ((kernel_size - 1) * dilation) % 2 == 1


class SamePad2d(nn.Module):
    """Zero-pads an (N, C, H, W) input as TF's SAME rule asks for the conv that follows.

    (N, C, H, W) -> (N, C, H + top + bottom, W + left + right), the amounts from
    :func:`same_padding` of this input's H and W. Traced (ONNX export), the amounts
    are those of the traced input size.

    Args:
        kernel_size, stride, dilation: of the square convolution that follows.
    """

    def __init__(self, kernel_size: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding(int(x.shape[-2]), self.kernel_size, self.stride, self.dilation)
        left, right = same_padding(int(x.shape[-1]), self.kernel_size, self.stride, self.dilation)
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"
