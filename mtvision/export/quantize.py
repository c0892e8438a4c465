"""Static INT8 quantisation of a deployed ONNX graph with onnxruntime (QDQ format).

The network's compute - convolutions, the classifier's ``Gemm``/``MatMul``,
the residual ``Add``s and the ops between them that QDQ needs to stay in
int8 (``Clip``/``Relu`` activations, ``Pad``, pooling, ``Concat``, the
image-pooling ``Expand``) - runs in int8: weights symmetric int8 per output
channel, activations with a scale and zero point from calibration images.
The post-processing inside a deployed graph (softmax, top-k, box decoding,
``NonMaxSuppression``, the logits' ``Resize``, ``ArgMax``) stays float: it is
every node that feeds no compute op (:func:`postprocessing_nodes`), and the
last compute layers (the logits) keep float outputs by default, so scores,
boxes and the argmax see the same precision as in the float graph.

Calibration: a :class:`UInt8ImageReader` hands onnxruntime the caller's uint8
(N, 3, H, W) batches; onnxruntime records each activation's range (MinMax, or
a histogram for Percentile/Entropy) and derives the scales. The written file
keeps the source file's ``metadata_props`` (the ``"mtvision"`` JSON byte for
byte) and adds ``"mtvision.quantization"``: JSON with the calibration images'
count, the settings and the float file it came from (``source``).

A graph that is already int8 (it carries that record, or QuantizeLinear /
DequantizeLinear nodes) is refused before any calibration, in one line naming
the float file to quantise instead (:func:`check_float_graph`). The int8 file is
written beside the target under a temporary name, opened with onnxruntime, and
only then renamed over the target (verify-then-commit,
:func:`~mtvision.utils.atomic_files.staged_file`).

Reference: onnxruntime's ``quantize_static`` and its CPU guidance (uint8
activations, int8 weights on x86 with VNNI; QDQ since onnxruntime 1.11);
Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference" (the affine scheme).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxoptimizer
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    create_calibrator,
    quantize_static,
)
from onnxruntime.quantization.calibrate import save_tensors_data
from onnxruntime.quantization.shape_inference import quant_pre_process

from mtvision.errors import ExportError
from mtvision.export.deploy import METADATA_KEY
from mtvision.export.onnx_export import onnx_session
from mtvision.utils.atomic_files import atomic_write_bytes, staged_file

__all__ = [
    "COMPUTE_OP_TYPES",
    "QUANTIZATION_METADATA_KEY",
    "QuantizationSettings",
    "UInt8ImageReader",
    "check_float_graph",
    "fold_pads_into_convs",
    "graph_input",
    "postprocessing_nodes",
    "quantize_onnx",
]

#: Ops whose weights carry the network's multiply-adds: what int8 is for.
MULTIPLY_ADD_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: Quantised when they belong to the network. Besides the multiply-adds, the ops
#: that keep int8 tensors int8 between them: onnxruntime fuses Q/DQ around these
#: into integer kernels (QLinearConv, QLinearAdd, ...) or moves them as bytes;
#: leaving one float costs a dequantise and a quantise per tensor.
COMPUTE_OP_TYPES = (
    *MULTIPLY_ADD_OP_TYPES,
    "Add",
    "Clip",
    "Relu",
    "Pad",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "Concat",
    "Expand",
    "Reshape",
    "Flatten",
    "Transpose",
)
#: The ``metadata_props`` key of the quantisation record (JSON).
QUANTIZATION_METADATA_KEY = "mtvision.quantization"

#: Nodes that only a quantised graph holds.
QDQ_OP_TYPES = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul")

_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
_ACTIVATION_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


@dataclass
class QuantizationSettings:
    """How :func:`quantize_onnx` quantises; the defaults are the measured best on
    x86 with VNNI (docs/quantization.md has the table).

    Attributes:
        method: activation-range calibration, ``"minmax"``, ``"percentile"``
            (``percentile`` of |x|) or ``"entropy"`` (KL divergence, TensorRT's).
        activation_type: ``"uint8"`` (asymmetric, onnxruntime's x86 choice) or ``"int8"``.
        symmetric_activations: zero point at the middle of the range.
        per_channel: one weight scale per output channel (per tensor when False).
        float_last_layers: the compute nodes that feed only post-processing (the
            logits' convolution or Gemm) stay float.
        exclude_first_conv: the first convolution (on the normalised image) stays float.
        preprocess: run onnxruntime's ``quant_pre_process`` (shape inference and
            graph optimisation) first.
        percentile: with ``method="percentile"``, the percentile of |x| kept.
        fold_pads: fold zero ``Pad`` nodes into the convolutions after them
            (:func:`fold_pads_into_convs`).
    """

    method: str = "minmax"
    activation_type: str = "uint8"
    symmetric_activations: bool = False
    per_channel: bool = True
    float_last_layers: bool = True
    exclude_first_conv: bool = False
    preprocess: bool = True
    percentile: float = 99.999
    fold_pads: bool = True
    op_types: tuple[str, ...] = field(default=COMPUTE_OP_TYPES)

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)}, got {self.method!r}")
        if self.activation_type not in _ACTIVATION_TYPES:
            raise ValueError(
                f"activation_type must be one of {sorted(_ACTIVATION_TYPES)}, "
                f"got {self.activation_type!r}"
            )
        self.op_types = tuple(self.op_types)


class UInt8ImageReader(CalibrationDataReader):
    """onnxruntime's calibration input: uint8 (N, 3, H, W) batches under ``input_name``.

    ``batches`` yields numpy arrays or torch tensors, read once, lazily (one
    batch in memory at a time). ``on_batch(n)`` is called after each batch with
    its image count (a progress bar's ``update``). ``images`` counts what was handed over.

    Raises ``ValueError`` naming the batch for anything that is not uint8
    (N, 3, H, W), since a float or HWC batch would calibrate silently wrong ranges.
    """

    def __init__(
        self,
        batches: Iterable,
        input_name: str,
        on_batch: Callable[[int], object] | None = None,
    ) -> None:
        self.input_name = input_name
        self.on_batch = on_batch
        self.images = 0
        self._batches: Iterator = iter(batches)
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        array = np.ascontiguousarray(
            batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)
        )
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
            raise ValueError(
                f"calibration batch {self._index}: expected uint8 (N, 3, H, W) RGB images, "
                f"got {array.dtype} {tuple(array.shape)}"
            )
        self._index += 1
        self.images += len(array)
        if self.on_batch is not None:
            self.on_batch(len(array))
        return {self.input_name: array}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _feeds_multiply_adds(graph: onnx.GraphProto) -> set[str]:
    """Names of the nodes from which a Conv/Gemm/MatMul is reachable (themselves included)."""
    producer = {out: node for node in graph.node for out in node.output}
    reached: set[str] = set()
    stack = [node for node in graph.node if node.op_type in MULTIPLY_ADD_OP_TYPES]
    while stack:
        node = stack.pop()
        if node.name in reached:
            continue
        reached.add(node.name)
        stack.extend(producer[name] for name in node.input if name in producer)
    return reached


def postprocessing_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the network's last multiply-add: those from which no
    Conv/Gemm/MatMul is reachable (softmax, top-k, box decoding, NMS, the logits'
    resize, argmax, casts), in graph order. Nodes must be named (onnxruntime's
    quantiser excludes by name)."""
    network = _feeds_multiply_adds(model.graph)
    return [node.name for node in model.graph.node if node.name not in network]


def _last_multiply_adds(model: onnx.ModelProto) -> list[str]:
    """The multiply-add nodes whose outputs reach no other multiply-add (the logits)."""
    network = _feeds_multiply_adds(model.graph)
    consumers = _consumers(model.graph)
    last = []
    for node in model.graph.node:
        if node.op_type not in MULTIPLY_ADD_OP_TYPES:
            continue
        # Followed through ops that are not multiply-adds: does another one come?
        stack, seen, feeds_another = list(node.output), set(), False
        while stack and not feeds_another:
            tensor = stack.pop()
            for consumer in consumers.get(tensor, []):
                if consumer.op_type in MULTIPLY_ADD_OP_TYPES:
                    feeds_another = True
                    break
                if consumer.name in network and consumer.name not in seen:
                    seen.add(consumer.name)
                    stack.extend(consumer.output)
        if not feeds_another:
            last.append(node.name)
    return last


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def fold_pads_into_convs(model: onnx.ModelProto) -> int:
    """Move each zero ``Pad`` that feeds a ``Conv`` into that Conv's ``pads`` (onnxoptimizer's
    ``fuse_pad_into_conv`` pass), in place; returns how many were folded. Exact in float: a
    Conv's own padding is zeros too.

    Why: TF's "SAME" padding (mtvision's ``padding="same"``, the converted TFLite
    models) exports as a ``Pad`` before each stride-2 convolution, and onnxruntime runs
    a Pad between int8 convolutions in float (dequantise, pad, quantise: three passes
    over the tensor); inside the Conv it is the quantised kernel's own zero padding.
    The pass folds only constant-mode pads of value 0 on the spatial axes.
    """
    pads_before = sum(node.op_type == "Pad" for node in model.graph.node)
    fused = onnxoptimizer.optimize(model, ["fuse_pad_into_conv"])
    model.CopyFrom(fused)
    return pads_before - sum(node.op_type == "Pad" for node in model.graph.node)


def _first_conv(model: onnx.ModelProto) -> list[str]:
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    return convs[:1]


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed nodes unique names: exclusion lists are by name."""
    taken = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _input_name(model: onnx.ModelProto) -> str:
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"expected a graph with one image input, got inputs {inputs}")
    return inputs[0]


class _OneFeed(CalibrationDataReader):
    """Hands one feed to onnxruntime's calibrator, then ends."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self.feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self.feed = self.feed, None
        return feed


def _calibrate(path: str, reader: UInt8ImageReader, settings: QuantizationSettings, work: str):
    """The activation ranges (onnxruntime ``TensorsData``) over every batch of ``reader``.

    One batch per ``collect_data`` call: the histogram calibrators (percentile,
    entropy) keep every intermediate tensor of every batch they are handed before
    binning them (hundreds of MB per 513x513 image for DeepLab); handed one batch
    per call, they bin as they go, and MinMax merges its ranges across calls.
    ``None`` without any batch.
    """
    options = {"percentile": settings.percentile} if settings.method == "percentile" else {}
    calibrator = create_calibrator(
        Path(path),
        list(settings.op_types),
        augmented_model_path=os.path.join(work, "augmented.onnx"),
        calibrate_method=_METHODS[settings.method],
        extra_options=options,
    )
    while (feed := reader.get_next()) is not None:
        calibrator.collect_data(_OneFeed(feed))
    return calibrator.compute_data() if reader.images else None


def load_onnx_file(path: str | os.PathLike) -> onnx.ModelProto:
    """The ONNX model at ``path`` (external data not loaded).

    Raises:
        FileNotFoundError: no such file.
        ExportError: a folder, or a file that is not ONNX (protobuf's ``DecodeError``
            and friends), named in one line.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ExportError(f"{path} is a folder, not an ONNX file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        return onnx.load(path, load_external_data=False)
    except Exception as error:  # DecodeError, RuntimeWarning-like parse errors: not ONNX
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{path}: not a readable ONNX model ({first})") from None


def check_float_graph(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Raise :class:`ExportError` when ``model`` (read from ``path``) is already quantised.

    What a file is, its metadata says: ``"mtvision.quantization"`` (written by
    :func:`quantize_onnx`, with its calibration and its float ``source``); a graph
    from elsewhere is recognised by its QuantizeLinear / DequantizeLinear nodes.
    Quantising it again would double the Q/DQ pairs (onnx's checker then fails
    deep inside onnxruntime's quantiser).
    """
    path = os.fspath(path)
    props = {prop.key: prop.value for prop in model.metadata_props}
    if QUANTIZATION_METADATA_KEY in props:
        try:
            record = json.loads(props[QUANTIZATION_METADATA_KEY])
        except json.JSONDecodeError:
            record = {}
        record = record if isinstance(record, dict) else {}
        how = ", ".join(
            str(part)
            for part in (
                record.get("method"),
                f"{record['calibration_images']} images"
                if "calibration_images" in record
                else None,
            )
            if part
        )
        origin = f", {record['source']}" if record.get("source") else ""
        raise ExportError(
            f"{path} is already quantised{f' ({how})' if how else ''}; quantise the float "
            f"file it came from{origin}"
        )
    qdq = sorted({node.op_type for node in model.graph.node if node.op_type in QDQ_OP_TYPES})
    if qdq:
        raise ExportError(
            f"{path} is already quantised (it has {'/'.join(qdq)} nodes); quantise the "
            "float file it came from"
        )


def graph_input(path: str | os.PathLike) -> tuple[tuple[int, int] | None, int | None]:
    """``(input_size, batch)`` of the float deployed ONNX file at ``path``: ``input_size``
    (H, W) from the ``"mtvision"`` metadata, else the input's static shape, ``None``
    when dynamic; ``batch`` the input's fixed batch size or ``None`` when dynamic.

    Raises:
        FileNotFoundError: no such file.
        ExportError: naming the file, when it is no ONNX model, is already quantised
            (:func:`check_float_graph`), or its one image input is not uint8
            (N, 3, H, W).
    """
    path = os.fspath(path)
    model = load_onnx_file(path)
    check_float_graph(model, path)
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    tensor = inputs[0].type.tensor_type if len(inputs) == 1 else None
    dims = (
        [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if tensor
        else []
    )
    if (
        tensor is None
        or tensor.elem_type != onnx.TensorProto.UINT8
        or len(dims) != 4
        or dims[1] != 3
    ):
        found = [
            f"{v.name} {onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()}"
            for v in inputs
        ]
        raise ExportError(
            f"{path}: expected one uint8 (N, 3, H, W) image input (a deployed graph, "
            f"tools/export_onnx.py), got inputs {found}"
        )
    size = (dims[2], dims[3]) if dims[2] and dims[3] else None
    props = {prop.key: prop.value for prop in model.metadata_props}
    if METADATA_KEY in props:
        try:
            metadata = json.loads(props[METADATA_KEY])
        except json.JSONDecodeError as error:
            raise ExportError(
                f"{path}: its '{METADATA_KEY}' metadata is not JSON ({error})"
            ) from None
        if "input_size" in metadata:
            given = metadata["input_size"]
            size = None if given is None else (int(given[0]), int(given[1]))
    return size, dims[0] or None


def quantize_onnx(
    source: str | os.PathLike,
    target: str | os.PathLike,
    calibration_batches: Iterable,
    settings: QuantizationSettings | None = None,
    on_batch: Callable[[int], object] | None = None,
    extra_nodes_to_exclude: Sequence[str] = (),
) -> dict:
    """Quantise the ONNX file ``source`` to int8 (QDQ) and write it to ``target``.

    Args:
        source: a float ONNX graph with one uint8 (N, 3, H, W) image input
            (mtvision's deployed graph, or ``export_onnx`` of a ``Uint8Input``).
        target: where the int8 graph goes; written to a temporary file beside it,
            checked (``onnx.checker``, an onnxruntime session) and only then renamed
            over it, so it is never partial and a file that fails stays unwritten.
        calibration_batches: uint8 (N, 3, H, W) RGB batches (numpy or torch),
            each at a size the graph takes, already through the config's test
            pipeline (resize): the activation ranges are measured on them.
        settings: :class:`QuantizationSettings` (default: the measured best).
        on_batch: called with each batch's image count (progress).
        extra_nodes_to_exclude: more node names to keep float.

    Returns:
        The record written under ``metadata_props["mtvision.quantization"]``:
        ``{"calibration_images", "method", "activation_type", "weight_type",
        "per_channel", "symmetric_activations", "float_nodes", ...}``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ExportError: ``source`` is no ONNX file or is already quantised
            (:func:`check_float_graph`), before any calibration.
        ValueError: no calibration image, or a batch that is not uint8 (N, 3, H, W).
        OutputError: ``target`` cannot be written (full disk, permissions).
    """
    settings = settings or QuantizationSettings()
    source, target = os.fspath(source), os.fspath(target)
    load_onnx_file(source)  # a clear error for a folder or a file that is not ONNX
    original = onnx.load(source)
    check_float_graph(original, source)
    input_name = _input_name(original)

    with tempfile.TemporaryDirectory(prefix="mtvision-quantize-") as work:
        named = os.path.join(work, "named.onnx")
        _name_nodes(original)
        onnx.save(original, named)
        float_path = named
        if settings.preprocess:
            float_path = os.path.join(work, "preprocessed.onnx")
            quant_pre_process(named, float_path, skip_symbolic_shape=True)
        model = onnx.load(float_path)
        _name_nodes(model)
        folded_pads = fold_pads_into_convs(model) if settings.fold_pads else 0
        onnx.save(model, float_path)

        excluded = postprocessing_nodes(model)
        float_compute = list(extra_nodes_to_exclude)
        if settings.float_last_layers:
            float_compute += _last_multiply_adds(model)
        if settings.exclude_first_conv:
            float_compute += _first_conv(model)

        reader = UInt8ImageReader(calibration_batches, input_name, on_batch)
        cache = os.path.join(work, "ranges.json")
        ranges = _calibrate(float_path, reader, settings, work)
        if reader.images == 0:
            raise ValueError(f"{source}: no calibration images; quantisation needs at least one")
        save_tensors_data(ranges, cache)
        quantized = os.path.join(work, "quantized.onnx")
        quantize_static(
            float_path,
            quantized,
            None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            activation_type=_ACTIVATION_TYPES[settings.activation_type],
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded + float_compute,
            calibrate_method=_METHODS[settings.method],
            extra_options={
                "ActivationSymmetric": settings.symmetric_activations,
                "WeightSymmetric": True,
            },
            calibration_cache_path=cache,
        )
        result = onnx.load(quantized)

    record = {
        "calibration_images": reader.images,
        **{k: v for k, v in asdict(settings).items() if k != "op_types"},
        "weight_type": "int8",
        "format": "QDQ",
        "op_types": list(settings.op_types),
        "float_nodes": float_compute,
        "postprocessing_nodes": len(excluded),
        "folded_pads": folded_pads,
        "source": source,
    }
    if settings.method != "percentile":
        record.pop("percentile")
    del result.metadata_props[:]
    for prop in original.metadata_props:
        if prop.key != QUANTIZATION_METADATA_KEY:
            result.metadata_props.add(key=prop.key, value=prop.value)
    result.metadata_props.add(key=QUANTIZATION_METADATA_KEY, value=json.dumps(record))
    onnx.checker.check_model(result)
    with staged_file(target) as staged:
        atomic_write_bytes(staged, result.SerializeToString())
        onnx_session(staged)  # onnxruntime reads it: the check before it replaces target
    return record
