"""A float64 interpreter of a TFLite graph's op list: the oracle for exact conversion.

It runs the ops of :class:`~mtvision.convert.tflite_graph.TfliteGraph` in file order
on real (dequantised) values with ``torch.nn.functional`` and plain index arithmetic,
following the TFLite reference kernels rather than mtvision's modules: TF "SAME"
padding is computed here from TensorFlow's formula, bilinear resizing from TF's three
coordinate rules, so the converted mtvision model is checked against an independent
implementation of what the file says. Quantised activations are not re-quantised
(``QUANTIZE`` / ``DEQUANTIZE`` are the identity on real values): the result is the
float network the int8 file approximates.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mtvision.convert.tflite_graph import TfliteGraph, TfliteOp


def _activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "NONE":
        return x
    if name == "RELU":
        return x.clamp(min=0)
    if name == "RELU6":
        return x.clamp(0, 6)
    if name == "RELU_N1_TO_1":
        return x.clamp(-1, 1)
    raise NotImplementedError(f"fused activation {name}")


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) for one spatial axis (tf.nn.conv2d docs)."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _conv(x_nhwc, weight_ohwi, bias, options, groups: int) -> torch.Tensor:
    x = x_nhwc.permute(0, 3, 1, 2)
    weight = weight_ohwi.permute(0, 3, 1, 2)
    stride = (options["StrideH"], options["StrideW"])
    dilation = (options["DilationHFactor"], options["DilationWFactor"])
    if options["Padding"] == "SAME":
        top, bottom = _same_padding(x.shape[2], weight.shape[2], stride[0], dilation[0])
        left, right = _same_padding(x.shape[3], weight.shape[3], stride[1], dilation[1])
        x = F.pad(x, (left, right, top, bottom))
    y = F.conv2d(x, weight, bias, stride=stride, dilation=dilation, groups=groups)
    return _activation(y, options["FusedActivationFunction"]).permute(0, 2, 3, 1)


def _resize_bilinear(x_nhwc, size, align_corners: bool, half_pixel_centers: bool):
    """TF's ResizeBilinear: source coordinate per output index, then linear blending."""

    def coordinates(out_size: int, in_size: int):
        index = torch.arange(out_size, dtype=torch.float64)
        if align_corners and out_size > 1:
            source = index * ((in_size - 1) / (out_size - 1))
        elif half_pixel_centers:
            source = (index + 0.5) * (in_size / out_size) - 0.5
        else:
            source = index * (in_size / out_size)
        low = torch.floor(source)
        fraction = source - low
        low_index = low.long().clamp(0, in_size - 1)
        high_index = (low.long() + 1).clamp(0, in_size - 1)
        if half_pixel_centers:
            fraction = torch.where(source < 0, torch.zeros_like(fraction), fraction)
        return low_index, high_index, fraction

    top, bottom, dy = coordinates(size[0], x_nhwc.shape[1])
    left, right, dx = coordinates(size[1], x_nhwc.shape[2])
    rows = (
        x_nhwc[:, top] * (1 - dy)[None, :, None, None] + x_nhwc[:, bottom] * dy[None, :, None, None]
    )
    return (
        rows[:, :, left] * (1 - dx)[None, None, :, None]
        + rows[:, :, right] * dx[None, None, :, None]
    )


def run_float_reference(
    graph: TfliteGraph, image_nhwc_uint8: np.ndarray
) -> dict[int, torch.Tensor]:
    """Run the graph in float64 on a uint8 (1, H, W, 3) image of the graph input's size.

    The input is dequantised with the input tensor's scale and zero point. Returns every
    tensor's real value by tensor index (activations NHWC), outputs included.
    """
    values: dict[int, torch.Tensor] = {}

    def value(index: int) -> torch.Tensor:
        if index not in values:
            values[index] = torch.from_numpy(graph.tensor(index).dequantize())
        return values[index]

    (input_index,) = graph.inputs
    source = graph.tensor(input_index)
    if tuple(image_nhwc_uint8.shape) != source.shape:
        raise ValueError(f"the graph takes {source.shape}, got {image_nhwc_uint8.shape}")
    scale, zero_point = float(source.scale[0]), float(source.zero_point[0])
    values[input_index] = (
        torch.from_numpy(image_nhwc_uint8.astype(np.float64)) - zero_point
    ) * scale

    for op in graph.ops:
        values[op.outputs[0]] = _run(op, graph, value)
    return values


def _run(op: TfliteOp, graph: TfliteGraph, value) -> torch.Tensor:
    options = op.options
    inputs = [value(i) if i >= 0 else None for i in op.inputs]
    if op.type in ("QUANTIZE", "DEQUANTIZE"):
        return inputs[0]
    if op.type == "CONV_2D":
        return _conv(inputs[0], inputs[1], inputs[2], options, groups=1)
    if op.type == "DEPTHWISE_CONV_2D":
        weight = inputs[1]  # [1, H, W, C * multiplier]
        channels = inputs[0].shape[3]
        return _conv(inputs[0], weight.permute(3, 1, 2, 0), inputs[2], options, groups=channels)
    if op.type == "ADD":
        return _activation(inputs[0] + inputs[1], options["FusedActivationFunction"])
    if op.type == "AVERAGE_POOL_2D":
        if options["Padding"] != "VALID":
            raise NotImplementedError("AVERAGE_POOL_2D with SAME padding")
        x = inputs[0].permute(0, 3, 1, 2)
        y = F.avg_pool2d(
            x,
            (options["FilterHeight"], options["FilterWidth"]),
            (options["StrideH"], options["StrideW"]),
        )
        return _activation(y, options["FusedActivationFunction"]).permute(0, 2, 3, 1)
    if op.type == "MEAN":
        axes = [int(a) for a in graph.tensor(op.inputs[1]).data.reshape(-1)]
        return inputs[0].mean(dim=axes, keepdim=bool(options["KeepDims"]))
    if op.type == "RESHAPE":
        shape = graph.tensor(op.outputs[0]).shape
        return inputs[0].reshape(shape)
    if op.type == "SOFTMAX":
        return torch.softmax(inputs[0] * options["Beta"], dim=-1)
    if op.type == "RESIZE_BILINEAR":
        size = [int(s) for s in graph.tensor(op.inputs[1]).data]
        return _resize_bilinear(
            inputs[0], size, options["AlignCorners"], options["HalfPixelCenters"]
        )
    if op.type == "CONCATENATION":
        y = torch.cat(inputs, dim=options["Axis"])
        return _activation(y, options["FusedActivationFunction"])
    if op.type == "ARG_MAX":
        axis = int(graph.tensor(op.inputs[1]).data)
        return inputs[0].argmax(dim=axis)
    raise NotImplementedError(f"{graph.describe(op)}")
