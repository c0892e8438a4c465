"""Bit-exact emulation of an int8 TFLite DeepLab file's arithmetic in the converted model.

Why: the converted float model equals a float64 run of the file's op list, but Google's
runtime computes in int8, and its class maps differ from the float ones on 4% of the
pixels of real photos (32 close-scoring ADE20K classes; 1-LSB differences in early
layers grow layer by layer, so merely rounding each tensor to its int8 grid is not
enough: measured 0.97 agreement). This module records, at conversion, every quantised
tensor the model's modules produce (:func:`int8_record`) and replays the runtime's
integer arithmetic on them with forward hooks (:func:`apply_int8_emulation`), as the
default CPU runtime (``ai_edge_litert`` with its XNNPACK delegate) computes it:

- input: the uint8 pixel ``p`` means ``(p - zero_point) * scale`` (the file's zero point
  127, where the float preprocessing subtracts 127.5);
- CONV_2D / DEPTHWISE_CONV_2D: the exact int32 accumulator of int8 inputs and weights
  plus the int32 bias, times the float32 scale ``fl(fl(s_in * s_w[c]) / s_out)`` in
  float32, rounded half to even, plus the output zero point, clamped to the fused
  activation's range (XNNPACK's "fp32" requantisation);
- ADD: the real sum rounded to the output grid;
- AVERAGE_POOL_2D: TFLite's own kernel, the sum of the int8 values divided by the
  count and rounded half away from zero;
- QUANTIZE (int8 -> int8, before a concatenation): XNNPACK's ``qs8-vcvt``, a
  multiplier of 8 fractional bits ``m = rint(256 * s_in / s_out)`` and
  ``floor(((q - zp_in) * m + 128) / 256) + zp_out`` (1% coarser than the scale ratio);
- RESIZE_BILINEAR: the interpolated int8 values rounded half up (XNNPACK's
  ``ibilinear``, 11-bit weights that are exact for a 4x resize);
- ARG_MAX: the first of equal int8 logits, which ``torch.argmax`` picks as well.

Tensors between modules stay float32 real values on their int8 grid
(``(q - zero_point) * scale``); each hook recovers the integers, computes in float64
(exact for these sizes) and returns the real values of its int8 result. Measured on
the 28 photos of ``docs/segmentation.md``: class maps equal to the runtime's (see there).

The record lives in the converted checkpoint's ``meta["int8_emulation"]``; the weights
stay the float (dequantised) ones. Export runs the float model (the hooks are not
traceable graph operations worth exporting: the exporter quantises on its own).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtvision.errors import CheckpointError

__all__ = ["apply_int8_emulation", "int8_record", "META_KEY"]

#: The checkpoint ``meta`` key holding :func:`int8_record`'s result.
META_KEY = "int8_emulation"
_F32 = np.float32


def _grid(graph, index: int) -> dict:
    tensor = graph.tensor(index)
    return {"scale": float(tensor.scale[0]), "zero_point": int(tensor.zero_point[0])}


def _activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    low, high = -128, 127
    if activation in ("RELU", "RELU6"):
        low = max(low, zero_point)
    if activation == "RELU6":
        high = min(high, zero_point + round(6.0 / scale))
    return low, high


def _conv_ops(layers: Mapping[str, object]):
    return [(name, layer.op) for name, layer in layers.items()]


def int8_record(parsed, layers: Mapping[str, object], model: nn.Module) -> dict:
    """The quantisation of every emulated point of a converted int8 DeepLab graph.

    Args:
        parsed: the :class:`~mtvision.convert.tflite_mobilenet_graph.MobileNetV2Graph`.
        layers: module name -> the ``ConvLayer`` loaded into it (ConvNormAct or Conv2d).
        model: the converted model (its module names key the record).

    Returns:
        ``{"input": grid, "convs": {module: {...}}, "adds": {module: {...}},
        "pools": {...}, "requantize": {module: {...}}, "resize_inputs": {module: {...}},
        "logits": grid}``, JSON-able; an empty dict for a file whose activations are
        not int8 (float, or uint8 such as the VOC DeepLabv3: not emulated).
    """
    graph = parsed.graph
    if any(str(graph.tensor(op.outputs[0]).dtype) != "int8" for _, op in _conv_ops(layers)):
        # uint8 files (the older TF1 scheme, e.g. the VOC DeepLabv3) run other kernels
        # (asymmetric weights, uint8 ranges) that are not emulated here.
        return {}
    consumers = graph.consumers
    record: dict = {
        "input": _grid(graph, graph.inputs[0]),
        "convs": {},
        "adds": {},
        "pools": {},
        "requantize": {},
        "resize_inputs": {},
    }
    for name, layer in layers.items():
        op = layer.op
        output = _grid(graph, op.outputs[0])
        record["convs"][name] = {
            "input": _grid(graph, op.inputs[0]),
            "weight_scales": [float(s) for s in graph.tensor(op.inputs[1]).scale],
            "output": output,
            "range": _activation_range(layer.activation, output["scale"], output["zero_point"]),
        }
        readers = consumers.get(op.outputs[0], [])
        if len(readers) == 1 and readers[0].type == "QUANTIZE":  # requantised for a concat
            record["requantize"][name] = _grid(graph, readers[0].outputs[0])
    names = {module: name for name, module in model.named_modules()}
    blocks = [b for i in range(1, 8) for b in getattr(model.backbone, f"stage{i}")]
    for block, block_layers in zip(blocks, parsed.blocks, strict=True):
        if block_layers.residual:
            project = block_layers.project.op.outputs[0]
            (add,) = [op for op in consumers[project] if op.type == "ADD"]
            (shortcut,) = [tensor for tensor in add.inputs if tensor != project]
            record["adds"][names[block.residual_add]] = {
                "inputs": [_grid(graph, project), _grid(graph, shortcut)],
                "output": _grid(graph, add.outputs[0]),
            }
    tail = parsed.tail
    head = next(iter(model.heads.values()))
    pooling = head.aspp.branches[-1]
    pool_op = graph.producers[tail.image_pooling.op.inputs[0]]
    pool_grid = _grid(graph, pool_op.outputs[0])
    if pool_grid != _grid(graph, pool_op.inputs[0]):
        raise ValueError(f"{graph.describe(pool_op)}: int8 average pooling changes the grid")
    record["pools"][names[pooling.pool]] = pool_grid
    (resize,) = consumers[tail.image_pooling.op.outputs[0]]
    (requantize,) = consumers[resize.outputs[0]]
    record["requantize"][names[pooling]] = {
        "from": _grid(graph, resize.outputs[0]),
        **_grid(graph, requantize.outputs[0]),
    }
    if tail.decoder is not None:
        (resize,) = consumers[tail.projection.op.outputs[0]]
        record["resize_inputs"][names[head.decoder]] = {
            "channels": tail.projection.out_channels,
            **_grid(graph, resize.outputs[0]),
        }
    record["logits"] = _grid(graph, tail.logits.op.outputs[0])
    return record


def _on_grid(x: Tensor, grid: Mapping) -> Tensor:
    """Real values -> the integers ``q - zero_point`` (float64)."""
    return torch.round(x.double() / grid["scale"])


def _real(q: Tensor, grid: Mapping) -> Tensor:
    """Integers q (with zero point) -> float32 real values."""
    return ((q - grid["zero_point"]) * grid["scale"]).float()


def _round_half_up(raw: Tensor) -> Tensor:
    # raw values are multiples of 1/16 up to float error: snap, then round .5 up.
    return torch.floor(torch.round(raw * 16) / 16 + 0.5)


class _Emulation:
    """The hooks of one model; :meth:`remove` takes them off."""

    def __init__(self, model: nn.Module, record: Mapping) -> None:
        self.handles: list = []
        self.record = record
        modules = dict(model.named_modules())
        missing = [
            name
            for kind in ("convs", "adds", "pools", "requantize", "resize_inputs")
            for name in record[kind]
            if name not in modules
        ]
        if missing:
            raise CheckpointError(
                f"the int8 emulation record names modules the model lacks: {missing[:5]}"
            )
        preprocessor = model.data_preprocessor
        self.mean = preprocessor.mean.reshape(1, -1, 1, 1).double()
        self.std = preprocessor.std.reshape(1, -1, 1, 1).double()
        self.handles.append(model.backbone.register_forward_pre_hook(self.input_hook))
        for name, conv in record["convs"].items():
            self.handles.append(modules[name].register_forward_hook(self.conv_hook(conv)))
        for name, add in record["adds"].items():
            self.handles.append(modules[name].register_forward_hook(self.add_hook(add)))
        for name, grid in record["pools"].items():
            self.handles.append(modules[name].register_forward_hook(self.pool_hook(grid)))
        for name, target in record["requantize"].items():
            source = target.get("from") or record["convs"][name]["output"]
            hook = self.requantize_hook(source, target)
            self.handles.append(modules[name].register_forward_hook(hook))
        for name, grid in record["resize_inputs"].items():
            hook = self.resize_input_hook(grid)
            self.handles.append(modules[name].register_forward_pre_hook(hook))
        head = next(iter(model.heads.values()))
        float_upsample = head.upsample_logits
        logits = record["logits"]

        def upsample_logits(x: Tensor, input_size: tuple[int, int]) -> Tensor:
            raw = float_upsample(x, input_size).double() / logits["scale"] + logits["zero_point"]
            return _real(_round_half_up(raw).clamp(-128, 127), logits)

        head.upsample_logits = upsample_logits
        self.head = head

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        del self.head.upsample_logits  # back to the class's method

    def input_hook(self, _module, args):
        (x, *rest) = args
        pixels = torch.round(x.double() * self.std.to(x.device) + self.mean.to(x.device))
        grid = self.record["input"]  # uint8 input grid
        return (_real(pixels, grid), *rest)

    @staticmethod
    def conv_hook(conv: Mapping):
        s_in = _F32(conv["input"]["scale"])
        s_w = np.asarray(conv["weight_scales"], _F32)
        scale = torch.from_numpy((s_in * s_w).astype(_F32) / _F32(conv["output"]["scale"]))
        product = torch.from_numpy(float(s_in) * s_w.astype(np.float64))
        low, high = conv["range"]
        zero_point = conv["output"]["zero_point"]

        def hook(module, args, _output):
            x = _on_grid(args[0], conv["input"])
            inner = getattr(module, "conv", module)
            if getattr(module, "pad", None) is not None:
                x = module.pad(x)
            bias = module.bn.bias if hasattr(module, "bn") else inner.bias
            weight = torch.round(inner.weight.double() / product.view(-1, 1, 1, 1) * float(s_in))
            bias = torch.round(bias.double() / product)
            acc = F.conv2d(
                x, weight, bias, inner.stride, inner.padding, inner.dilation, inner.groups
            )
            q = torch.round(acc.float() * scale.view(1, -1, 1, 1)).double() + zero_point
            return _real(q.clamp(low, high), conv["output"])

        return hook

    @staticmethod
    def add_hook(add: Mapping):
        grid_a, grid_b = add["inputs"]
        out = add["output"]

        def hook(_module, args, _output):
            x, residual = args  # ResidualAdd(x, out) = x + out
            real = (
                _on_grid(residual, grid_a) * grid_a["scale"] + _on_grid(x, grid_b) * grid_b["scale"]
            )
            q = torch.round(real / out["scale"]) + out["zero_point"]
            return _real(q.clamp(-128, 127), out)

        return hook

    @staticmethod
    def pool_hook(grid: Mapping):
        def hook(_module, args, _output):
            # TFLite's int8 AVERAGE_POOL_2D (XNNPACK leaves it to it): the sum of the
            # stored int8 values (zero point included) divided by the count, rounded
            # half away from zero.
            q = _on_grid(args[0], grid) + grid["zero_point"]
            total, count = q.sum(dim=(2, 3), keepdim=True), q.shape[2] * q.shape[3]
            q = torch.sign(total) * torch.floor((total.abs() + count // 2) / count)
            return _real(q.clamp(-128, 127), grid)

        return hook

    @staticmethod
    def requantize_hook(source: Mapping, target: Mapping):
        multiplier = float(np.rint(_F32(256) * (_F32(source["scale"]) / _F32(target["scale"]))))

        def hook(_module, _args, output):
            q = torch.floor((_on_grid(output, source) * multiplier + 128) / 256)
            return _real((q + target["zero_point"]).clamp(-128, 127), target)

        return hook

    @staticmethod
    def resize_input_hook(grid: Mapping):
        channels = grid["channels"]

        def hook(_module, args):
            (x, *rest) = args
            resized, other = x[:, :channels], x[:, channels:]
            raw = resized.double() / grid["scale"] + grid["zero_point"]
            resized = _real(_round_half_up(raw).clamp(-128, 127), grid)
            return (torch.cat([resized, other], dim=1), *rest)

        return hook


def apply_int8_emulation(model: nn.Module, record: Mapping) -> _Emulation:
    """Make ``model`` (a converted DeepLab, eval mode) compute as the int8 file does.

    Returns the handle; ``handle.remove()`` restores the float model.

    Raises:
        CheckpointError: an empty record (a float file, or a checkpoint converted before
            the record existed), or one naming modules the model lacks.
    """
    if not record:
        raise CheckpointError(
            "the checkpoint has no int8 emulation record (meta['int8_emulation']): convert "
            "the int8 .tflite file again with tools/convert_weights.py"
        )
    return _Emulation(model, record)
