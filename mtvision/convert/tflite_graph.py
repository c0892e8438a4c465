"""A TFLite flatbuffer as a graph of ops over tensors, with constants dequantised to float.

The file is read with the ``tflite`` package (the flatbuffer classes generated from
TensorFlow Lite's ``schema.fbs``); nothing about the format is parsed here by hand.
The ops are kept in the file's order, which TFLite guarantees is an execution
(topological) order, with each op's builtin options as a plain dict (``Padding``,
``StrideH``, ``DilationHFactor``, ``FusedActivationFunction``, ``AlignCorners``, ...)
and enum values turned into their names (``"SAME"``, ``"RELU6"``).

Dequantisation follows TFLite's quantisation spec
(https://ai.google.dev/edge/litert/models/quantization_spec):
``real = scale * (q - zero_point)``, per tensor (one scale) or per channel (one scale
and zero point per index along ``quantized_dimension``). int32 biases carry their own
scale, which the spec fixes to ``input_scale * weight_scale`` (checked by the
converter, :func:`check_bias_scale`).

Reading needs the optional ``tflite`` dependency (``pip install 'mtvision[tflite]'``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from mtvision.errors import ConversionError

__all__ = ["TfliteGraph", "TfliteOp", "TfliteTensor", "check_bias_scale", "require_tflite"]

_FILE_IDENTIFIER = b"TFL3"


def require_tflite():
    """The ``tflite`` schema package; ``ImportError`` saying how to install it when missing."""
    try:
        import tflite
    except ImportError as error:  # the optional extra is missing
        raise ImportError(
            "reading .tflite files needs the 'tflite' package: pip install 'mtvision[tflite]'"
        ) from error
    return tflite


def _enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


@dataclass(frozen=True)
class TfliteTensor:
    """One tensor of the graph.

    Attributes:
        index: position in the subgraph's tensor list (what ops refer to).
        name: the converter's tensor name (TF op names joined by ``;``; not relied on).
        dtype: numpy dtype of the stored values (``uint8``, ``int8``, ``int32``, ...).
        shape: static shape; activations are NHWC, conv weights [out, H, W, in],
            depthwise weights [1, H, W, channels].
        scale, zero_point: quantisation parameters (1 entry per tensor, or one per
            channel along ``quantized_dimension``); empty for float tensors.
        quantized_dimension: the per-channel axis.
        data: the stored values for a constant tensor, else ``None``.
    """

    index: int
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int
    data: np.ndarray | None = field(repr=False)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def is_quantized(self) -> bool:
        return self.scale.size > 0

    def dequantize(self) -> np.ndarray:
        """The constant's real values as float64: ``scale * (q - zero_point)`` (per channel
        along ``quantized_dimension`` when there are several scales).

        Raises:
            ConversionError: the tensor is not a constant, or its quantisation
                parameters do not fit its shape.
        """
        if self.data is None:
            raise ConversionError(f"tensor {self.index} ({self.name}) is not a constant")
        values = self.data.astype(np.float64)
        if not self.is_quantized:
            return values
        scale = self.scale.astype(np.float64)
        zero_point = self.zero_point.astype(np.float64)
        if zero_point.size == 0:
            zero_point = np.zeros_like(scale)
        if scale.size == 1:
            return (values - zero_point[0]) * scale[0]
        axis = self.quantized_dimension
        if not 0 <= axis < values.ndim or values.shape[axis] != scale.size:
            raise ConversionError(
                f"tensor {self.index} ({self.name}) of shape {self.shape} has {scale.size} "
                f"per-channel scales along axis {axis}"
            )
        if zero_point.size == 1:
            zero_point = np.full_like(scale, zero_point[0])
        broadcast = [1] * values.ndim
        broadcast[axis] = scale.size
        return (values - zero_point.reshape(broadcast)) * scale.reshape(broadcast)


@dataclass(frozen=True)
class TfliteOp:
    """One builtin op: ``type`` (e.g. ``"CONV_2D"``), input and output tensor indices
    (-1 for an omitted optional input), and its builtin options as a dict."""

    index: int
    type: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


class TfliteGraph:
    """The first subgraph of a ``.tflite`` file: tensors, ops, graph inputs and outputs.

    Args:
        path: the ``.tflite`` file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConversionError: the file is not a TFLite flatbuffer, has several subgraphs,
            or holds custom ops (their semantics are not in the schema).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"TFLite file not found: {self.path}")
        with open(self.path, "rb") as file:
            buffer = file.read()
        tflite = require_tflite()
        if len(buffer) < 8 or not tflite.Model.ModelBufferHasIdentifier(buffer, 0):
            raise ConversionError(
                f"{self.path}: not a TFLite flatbuffer (no '{_FILE_IDENTIFIER.decode()}' identifier)"
            )
        try:
            model = tflite.Model.GetRootAsModel(buffer, 0)
            if model.SubgraphsLength() != 1:
                raise ConversionError(
                    f"{self.path}: has {model.SubgraphsLength()} subgraphs; only single-graph "
                    "models are supported"
                )
            subgraph = model.Subgraphs(0)
            self.tensors = [
                self._read_tensor(model, subgraph, i, buffer)
                for i in range(subgraph.TensorsLength())
            ]
            self.ops = [
                self._read_op(model, subgraph, i) for i in range(subgraph.OperatorsLength())
            ]
            self.inputs = tuple(int(i) for i in subgraph.InputsAsNumpy())
            self.outputs = tuple(int(i) for i in subgraph.OutputsAsNumpy())
        except ConversionError:
            raise
        except (IndexError, ValueError, TypeError, KeyError) as error:  # a damaged flatbuffer
            raise ConversionError(
                f"{self.path}: cannot read the TFLite flatbuffer ({type(error).__name__}: {error})"
            ) from error

    # ------------------------------------------------------------- reading

    def _read_tensor(self, model, subgraph, index: int, file_bytes: bytes) -> TfliteTensor:
        tflite = require_tflite()
        tensor = subgraph.Tensors(index)
        type_name = _enum_names(tflite.TensorType)[tensor.Type()]
        dtype = np.dtype(type_name.lower()) if type_name != "BOOL" else np.dtype(bool)
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        quantization = tensor.Quantization()
        scale = np.zeros(0, np.float32)
        zero_point = np.zeros(0, np.int64)
        quantized_dimension = 0
        if quantization is not None and quantization.ScaleLength():
            scale = quantization.ScaleAsNumpy().astype(np.float32)
            if quantization.ZeroPointLength():
                zero_point = quantization.ZeroPointAsNumpy().astype(np.int64)
            quantized_dimension = int(quantization.QuantizedDimension())
        data = None
        buffer = model.Buffers(tensor.Buffer())
        if buffer is not None:
            if buffer.Offset() > 1:  # large models keep the bytes after the flatbuffer
                raw = np.frombuffer(file_bytes, np.uint8, buffer.Size(), buffer.Offset())
            elif buffer.DataLength():
                raw = buffer.DataAsNumpy()
            else:
                raw = None
            if raw is not None:
                values = np.frombuffer(raw.tobytes(), dtype=dtype.newbyteorder("<"))
                if values.size != int(np.prod(shape, dtype=np.int64)):
                    raise ConversionError(
                        f"{self.path}: constant tensor {index} has {values.size} values for "
                        f"shape {shape}"
                    )
                data = values.reshape(shape).astype(dtype)
        return TfliteTensor(
            index=index,
            name=tensor.Name().decode("utf-8", errors="replace"),
            dtype=dtype,
            shape=shape,
            scale=scale,
            zero_point=zero_point,
            quantized_dimension=quantized_dimension,
            data=data,
        )

    def _read_op(self, model, subgraph, index: int) -> TfliteOp:
        tflite = require_tflite()
        op = subgraph.Operators(index)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Schema v3a keeps codes < 127 in deprecated_builtin_code as well.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_type = _enum_names(tflite.BuiltinOperator)[builtin]
        if op_type == "CUSTOM":
            custom = code.CustomCode().decode("utf-8", errors="replace")
            raise ConversionError(f"{self.path}: op {index} is the custom op {custom!r}")
        return TfliteOp(
            index=index,
            type=op_type,
            inputs=tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else (),
            outputs=tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else (),
            options=self._read_options(op),
        )

    @staticmethod
    def _read_options(op) -> dict:
        tflite = require_tflite()
        options_type = op.BuiltinOptionsType()
        if not options_type:
            return {}
        class_name = _enum_names(tflite.BuiltinOptions)[options_type]
        options = getattr(tflite, class_name)()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        enums = {
            "Padding": _enum_names(tflite.Padding),
            "FusedActivationFunction": _enum_names(tflite.ActivationFunctionType),
        }
        values = {}
        for name in dir(options):
            accessor = getattr(options, name)
            if (
                not name[:1].isupper()
                or name == "Init"
                or name.startswith("GetRootAs")
                or name.endswith(("BufferHasIdentifier", "AsNumpy", "Length", "IsNone"))
                or not callable(accessor)
            ):
                continue
            try:
                value = accessor()
            except TypeError:  # vector accessors take an index
                continue
            values[name] = enums[name].get(value, value) if name in enums else value
        return values

    # ----------------------------------------------------------- structure

    @cached_property
    def producers(self) -> dict[int, TfliteOp]:
        """Tensor index -> the op that writes it."""
        return {out: op for op in self.ops for out in op.outputs}

    @cached_property
    def consumers(self) -> dict[int, list[TfliteOp]]:
        """Tensor index -> the ops that read it, in execution order."""
        readers: dict[int, list[TfliteOp]] = {}
        for op in self.ops:
            for tensor in op.inputs:
                if tensor >= 0:
                    readers.setdefault(tensor, []).append(op)
        return readers

    def tensor(self, index: int) -> TfliteTensor:
        return self.tensors[index]

    def op_types(self) -> dict[str, int]:
        """How many ops of each type the graph has."""
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.type] = counts.get(op.type, 0) + 1
        return counts

    def describe(self, op: TfliteOp) -> str:
        """``op 12 CONV_2D (input shapes -> output shapes)``, for error messages."""
        ins = ", ".join(str(self.tensors[i].shape) for i in op.inputs if i >= 0)
        outs = ", ".join(str(self.tensors[i].shape) for i in op.outputs)
        return f"op {op.index} {op.type} ({ins} -> {outs})"


def check_bias_scale(graph: TfliteGraph, op: TfliteOp, rtol: float = 1e-3) -> None:
    """Raise unless a conv's int32 bias scale is ``input_scale * weight_scale`` (TFLite's
    quantisation spec), so that dequantising the bias with its own scale is right."""
    source, weight, bias = (graph.tensor(i) for i in op.inputs[:3])
    if not (source.is_quantized and weight.is_quantized and bias.is_quantized):
        return
    expected = source.scale.astype(np.float64)[0] * weight.scale.astype(np.float64)
    actual = bias.scale.astype(np.float64)
    if expected.size == 1 and actual.size > 1:
        expected = np.full_like(actual, expected[0])
    if expected.shape != actual.shape or not np.allclose(actual, expected, rtol=rtol, atol=0):
        raise ConversionError(
            f"{graph.path}: {graph.describe(op)}: bias scale {actual[:4]} is not input scale x "
            f"weight scale {expected[:4]}"
        )
