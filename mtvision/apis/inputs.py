"""What the Python API accepts as images, turned into (H, W, 3) uint8 RGB arrays.

One input is any of what torchvision and mmdet users pass:

- a path (``str`` / ``os.PathLike``): read by :func:`~mtvision.data.image_io.load_image`
  (EXIF orientation applied);
- an (H, W, 3) uint8 RGB numpy array, taken as given (OpenCV's ``cv2.imread`` gives
  BGR: pass ``cv2.cvtColor(image, cv2.COLOR_BGR2RGB)``);
- a ``PIL.Image`` of any mode: to RGB and upright as its file would be
  (:func:`~mtvision.data.image_io.image_from_pil`), so ``Image.open(p)`` gives what ``p``
  gives;
- encoded image bytes (``bytes`` / ``bytearray`` / ``memoryview``) or a binary file
  object (anything with ``read()`` returning bytes: ``open(p, "rb")``, ``io.BytesIO``,
  an HTTP response): decoded as a file is
  (:func:`~mtvision.data.image_io.decode_image`), read from its current position;
- a (3, H, W) uint8 torch tensor, RGB: what ``torchvision.io.read_image`` /
  ``decode_image`` return. Float tensors are refused rather than guessed (0..1 as
  torchvision's models take, or 0..255?).

Several inputs are a ``list`` / ``tuple`` (or an iterator, e.g. ``Path.glob``) of
these. Anything else, and an array or tensor of another shape or type, raises one
``TypeError`` / ``ValueError`` line naming the input's position, what it is and what
to pass; an undecodable file or byte string raises
:class:`~mtvision.errors.ImageLoadError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from mtvision.data.image_io import decode_image, image_from_pil, load_image

__all__ = ["ImageInput", "LoadedImage", "read_image_input", "read_image_inputs", "split_inputs"]

#: One image as the Python API accepts it.
ImageInput = (
    str | os.PathLike | np.ndarray | Image.Image | bytes | bytearray | memoryview | torch.Tensor
)

WHAT_TO_PASS = (
    "pass a file path, an (H, W, 3) uint8 RGB numpy array, a PIL image, encoded image "
    "bytes, a binary file object or a (3, H, W) uint8 torch tensor, or a list of these"
)
_ONE_IMAGE = (str, os.PathLike, np.ndarray, Image.Image, bytes, bytearray, memoryview)


class LoadedImage(NamedTuple):
    """One input read: ``image`` (H, W, 3) uint8 RGB, C-contiguous, and ``source``, what
    error messages and result files call it (its path, else ``<input N>``)."""

    image: np.ndarray
    source: str


def split_inputs(inputs: Any) -> tuple[list, bool]:
    """``(items, single)``: the inputs as a list, and whether ``inputs`` was one image
    (one result is returned) rather than a list (a list of results).

    Raises:
        TypeError: neither an image nor a list/tuple/iterator of them (a dict, a set, a
            number ...).
    """
    if _is_one_image(inputs):
        return [inputs], True
    if isinstance(inputs, list | tuple | Iterator):
        return list(inputs), False
    raise TypeError(f"the input is {_what(inputs)}; {WHAT_TO_PASS}")


def read_image_input(item: Any, index: int = 0) -> LoadedImage:
    """Input number ``index`` (for messages) as an (H, W, 3) uint8 RGB array and its name.

    Raises:
        ImageLoadError: a path, bytes or file that is not a readable image (named).
        TypeError: a type that is not an image (a nested list, a dict, a text-mode file).
        ValueError: an array or tensor of another shape or dtype, or an empty one.
    """
    name = f"<input {index}>"
    if isinstance(item, str | os.PathLike):
        return LoadedImage(load_image(item), os.fspath(item))
    if isinstance(item, np.ndarray):
        return LoadedImage(_checked_array(item, index), name)
    if isinstance(item, Image.Image):
        source = getattr(item, "filename", None) or name
        return LoadedImage(image_from_pil(item, source), source)
    if isinstance(item, bytes | bytearray | memoryview):
        return LoadedImage(decode_image(item, name), name)
    if isinstance(item, torch.Tensor):
        return LoadedImage(_checked_tensor(item, index), name)
    if callable(getattr(item, "read", None)):
        source = getattr(item, "name", None)
        source = source if isinstance(source, str) else name
        data = item.read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"input {index} is a file object whose read() gives {type(data).__name__}, "
                f"not bytes ({source}); open it in binary mode, open(path, 'rb')"
            )
        return LoadedImage(decode_image(data, source), source)
    raise TypeError(f"input {index} is {_what(item)}; {WHAT_TO_PASS}")


def read_image_inputs(inputs: Any) -> tuple[list[LoadedImage], bool]:
    """Every input read (:func:`split_inputs`, then :func:`read_image_input` each)."""
    items, single = split_inputs(inputs)
    return [read_image_input(item, index) for index, item in enumerate(items)], single


def _is_one_image(value: Any) -> bool:
    if isinstance(value, _ONE_IMAGE):
        return True
    if isinstance(value, torch.Tensor):
        return True  # a batch (N, 3, H, W) too: refused with a hint, not taken apart
    return callable(getattr(value, "read", None))


def _what(value: Any) -> str:
    """What a value is, in words: 'a 2-D float64 array (4, 5)', 'a list', 'None'."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D {value.dtype} array {value.shape}"
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"a {value.ndim}-D {dtype} tensor {tuple(value.shape)}"
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _checked_array(array: np.ndarray, index: int) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"input {index} is {_what(array)}; pass an (H, W, 3) uint8 RGB array"
            + _array_hint(array.shape, array.dtype.kind)
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"input {index} is an empty image, {_what(array)}")
    return np.ascontiguousarray(array)


def _checked_tensor(tensor: torch.Tensor, index: int) -> np.ndarray:
    if tensor.ndim == 4:
        raise ValueError(
            f"input {index} is {_what(tensor)}, a batch; pass its images as a list, "
            "list(batch), each a (3, H, W) uint8 RGB tensor"
        )
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[0] != 3:
        hint = ""
        if tensor.dtype.is_floating_point:
            hint = (
                "; a float image in 0..1 (what torchvision's models take) as "
                "(t * 255).round().to(torch.uint8)"
            )
        elif tensor.ndim == 3 and tensor.shape[2] == 3:
            hint = "; an (H, W, 3) tensor as t.permute(2, 0, 1)"
        raise ValueError(
            f"input {index} is {_what(tensor)}; pass a (3, H, W) uint8 RGB tensor "
            f"(torchvision.io.read_image gives one){hint}"
        )
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"input {index} is an empty image, {_what(tensor)}")
    return np.ascontiguousarray(tensor.detach().cpu().permute(1, 2, 0).numpy())


def _array_hint(shape: tuple[int, ...], kind: str) -> str:
    """How to turn a common wrong array into the right one."""
    if kind == "f":
        return "; a float image in 0..1 as (image * 255).round().astype(np.uint8)"
    if len(shape) == 2:
        return "; a gray image as np.stack([image] * 3, axis=-1)"
    if len(shape) == 3 and shape[0] == 3 and shape[2] != 3:
        return "; a (3, H, W) channels-first array as image.transpose(1, 2, 0)"
    if len(shape) == 3 and shape[2] == 4:
        return "; an RGBA image as image[..., :3]"
    if len(shape) == 4:
        return "; a batch as a list, list(batch)"
    return ""
