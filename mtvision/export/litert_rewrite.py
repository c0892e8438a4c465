"""Exact rewrites of a converted ``.tflite`` graph into the single ops LiteRT has for them.

LiteRT's converter and ai-edge-quantizer spell two things of mtvision's graphs in more
ops than Google's own DeepLab files (issue 19's speed row: 1.7x Google's MLPerf
DeepLabv3+ time before these rewrites and the channels-last argmax of the head's
``deploy``, as fast after them):

- :func:`fuse_legacy_resizes`: TF1's legacy bilinear resize
  (:func:`~mtvision.ops.resize.resize_asymmetric`: ``align_corners=False,
  half_pixel_centers=False``; PyTorch has no such mode) arrives as MIRROR_PAD (one
  symmetric row and column at the end, i.e. a copy of the last ones) -> RESIZE_BILINEAR
  (``align_corners``) to (h + 1, w + 1) -> SLICE -> SLICE to (h, w): three copies of the
  upsampled map. LiteRT's RESIZE_BILINEAR with both flags false is that resize in one
  op: output index i reads ``i * h_in / h`` clamped to the last row, the same
  coordinates and weights.
- :func:`argmax_without_dequantize`: the quantiser has no int8 ARG_MAX and puts a
  DEQUANTIZE of the full-size logits before it; the dequantisation is
  ``scale * (q - zero_point)`` with one ``scale > 0``, strictly increasing, so the
  argmax of the int8 values is the same index (ties included). LiteRT's ARG_MAX reads
  int8 (version 2), as in Google's file.

Both leave any other graph as it is; they work on the flatbuffer through
``ai_edge_litert``'s object API (``pip install -e '.[litert]'``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["argmax_without_dequantize", "fuse_legacy_resizes"]

#: ARG_MAX's first version reading int8 (LiteRT's op versioning).
ARG_MAX_INT8_VERSION = 2


def fuse_legacy_resizes(content: bytes) -> bytes:
    """``content`` (a .tflite) with each MIRROR_PAD -> RESIZE_BILINEAR -> SLICE -> SLICE
    spelling of the TF-legacy resize replaced by one RESIZE_BILINEAR
    (``align_corners=False, half_pixel_centers=False``) of the unpadded NHWC map to
    the sliced size; the same bytes back when there is none."""
    graph = _Graph(content)
    fused = 0
    for pad in graph.ops_named("MIRROR_PAD"):
        chain = _legacy_resize_chain(graph, pad)
        if chain is None:
            continue
        resize, first, second = chain
        height, width = graph.shape(second.outputs[0])[1:3]
        resize.inputs = [pad.inputs[0], graph.add_int32_constant([height, width])]
        resize.outputs = [second.outputs[0]]
        resize.builtinOptions.alignCorners = False
        resize.builtinOptions.halfPixelCenters = False
        graph.remove(pad, first, second)
        fused += 1
    return graph.serialize() if fused else content


def argmax_without_dequantize(content: bytes) -> bytes:
    """``content`` (a .tflite) with each DEQUANTIZE (one scale > 0) that feeds only an
    ARG_MAX removed, the ARG_MAX reading its int8 input; the same bytes back when
    there is none."""
    graph = _Graph(content)
    rewired = 0
    for argmax in graph.ops_named("ARG_MAX"):
        dequantize = graph.producer(argmax.inputs[0])
        if dequantize is None or graph.name(dequantize) != "DEQUANTIZE":
            continue
        source = dequantize.inputs[0]
        quantization = graph.tensor(source).quantization
        scales = None if quantization is None else quantization.scale
        if scales is None or len(scales) != 1 or not scales[0] > 0:
            continue
        if len(graph.consumers(argmax.inputs[0])) != 1 or graph.is_output(argmax.inputs[0]):
            continue
        argmax.inputs = [source, *list(argmax.inputs)[1:]]
        code = graph.model.operatorCodes[argmax.opcodeIndex]
        code.version = max(int(code.version), ARG_MAX_INT8_VERSION)
        graph.remove(dequantize)
        rewired += 1
    return graph.serialize() if rewired else content


def _legacy_resize_chain(graph: _Graph, pad) -> tuple | None:
    """(resize, slice, slice) after ``pad`` when the four ops are the legacy resize."""
    from ai_edge_litert.schema_py_generated import MirrorPadMode

    if pad.builtinOptions is None or pad.builtinOptions.mode != MirrorPadMode.SYMMETRIC:
        return None
    paddings = graph.constant(pad.inputs[1])
    if paddings is None or paddings.reshape(-1).tolist() != [0, 0, 0, 1, 0, 1, 0, 0]:
        return None
    chain = [pad]
    for name in ("RESIZE_BILINEAR", "SLICE", "SLICE"):
        output = chain[-1].outputs[0]
        following = graph.consumers(output)
        if len(following) != 1 or graph.is_output(output) or graph.name(following[0]) != name:
            return None
        chain.append(following[0])
    _, resize, first, second = chain
    options = resize.builtinOptions
    if options is None or not options.alignCorners or options.halfPixelCenters:
        return None
    height, width = graph.shape(resize.outputs[0])[1:3]
    for op in (first, second):
        if graph.constant(op.inputs[1]) is None or graph.constant(op.inputs[1]).any():
            return None  # a slice that starts anywhere but at the origin
    batch, out_height, out_width, channels = graph.shape(second.outputs[0])
    if (out_height + 1, out_width + 1) != (height, width):
        return None
    if (batch, channels) != tuple(np.asarray(graph.shape(pad.inputs[0]))[[0, 3]]):
        return None
    return resize, first, second


class _Graph:
    """The first subgraph of a .tflite, as ``ai_edge_litert``'s mutable objects."""

    def __init__(self, content: bytes) -> None:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        self._schema, self._utils = schema, flatbuffer_utils
        self.model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
        self.subgraph = self.model.subgraphs[0]
        self._op_names = {
            value: key
            for key, value in vars(schema.BuiltinOperator).items()
            if not key.startswith("_")
        }

    def name(self, op) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        return self._op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")

    def ops_named(self, name: str) -> list:
        return [op for op in self.subgraph.operators if self.name(op) == name]

    def producer(self, tensor: int):
        return next((op for op in self.subgraph.operators if tensor in list(op.outputs)), None)

    def consumers(self, tensor: int) -> list:
        return [op for op in self.subgraph.operators if tensor in list(op.inputs)]

    def is_output(self, tensor: int) -> bool:
        return tensor in list(self.subgraph.outputs)

    def tensor(self, index: int):
        return self.subgraph.tensors[index]

    def shape(self, tensor: int) -> list[int]:
        return [int(v) for v in self.tensor(tensor).shape]

    def constant(self, tensor: int) -> np.ndarray | None:
        """The int32 constant ``tensor`` holds (None for an activation)."""
        data = self.model.buffers[self.tensor(tensor).buffer].data
        if data is None or len(data) == 0:
            return None
        if self.tensor(tensor).type != self._schema.TensorType.INT32:
            return None
        return np.frombuffer(bytes(data), dtype=np.int32).reshape(self.shape(tensor))

    def add_int32_constant(self, values: list[int]) -> int:
        buffer = self._schema.BufferT()
        buffer.data = np.asarray(values, dtype=np.int32).tobytes()
        self.model.buffers.append(buffer)
        tensor = self._schema.TensorT()
        tensor.shape = [len(values)]
        tensor.type = self._schema.TensorType.INT32
        tensor.buffer = len(self.model.buffers) - 1
        tensor.name = f"mtvision_rewrite_constant_{len(self.subgraph.tensors)}".encode()
        self.subgraph.tensors.append(tensor)
        return len(self.subgraph.tensors) - 1

    def remove(self, *ops) -> None:
        self.subgraph.operators = [
            op for op in self.subgraph.operators if not any(op is gone for gone in ops)
        ]

    def serialize(self) -> bytes:
        """The flatbuffer, without the tensors no op uses any more (LiteRT allocates no
        memory for them, and ai-edge-quantizer's calibration reads every tensor)."""
        subgraph = self.subgraph
        used = {int(i) for i in list(subgraph.inputs) + list(subgraph.outputs)}
        for op in subgraph.operators:
            used.update(int(i) for i in list(op.inputs) + list(op.outputs) if i >= 0)
        kept = sorted(used)
        index = {old: new for new, old in enumerate(kept)}
        subgraph.tensors = [subgraph.tensors[old] for old in kept]
        subgraph.inputs = [index[int(i)] for i in subgraph.inputs]
        subgraph.outputs = [index[int(i)] for i in subgraph.outputs]
        for op in subgraph.operators:
            op.inputs = [index[int(i)] if i >= 0 else -1 for i in op.inputs]
            op.outputs = [index[int(i)] for i in op.outputs]
            if op.intermediates is not None and len(op.intermediates):
                op.intermediates = [index[int(i)] for i in op.intermediates]
        for signature in self.model.signatureDefs or []:
            if signature.subgraphIndex:
                continue
            for entry in list(signature.inputs or []) + list(signature.outputs or []):
                entry.tensorIndex = index[int(entry.tensorIndex)]
        return bytes(self._utils.convert_object_to_bytearray(self.model))
