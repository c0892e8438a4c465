"""The layers of a TFLite MobileNetV2 classifier or on-device DeepLabv3 / DeepLabv3+ graph, found by
walking its data flow.

The graph of the file (:class:`~mtvision.convert.tflite_graph.TfliteGraph`) is walked
along its data flow from the input, not matched by tensor names (TF1 and TF2 exports
name the same layers differently):

- the stem: a 3x3 stride-2 ``CONV_2D`` with ReLU6;
- inverted residual blocks, each ``[1x1 CONV_2D ReLU6] -> 3x3 DEPTHWISE_CONV_2D ReLU6
  -> 1x1 CONV_2D`` plus an ``ADD`` of the block input when it has a shortcut;
- then either the classifier tail (1x1 ``CONV_2D`` ReLU6 to 1280 channels -> global
  ``AVERAGE_POOL_2D`` or ``MEAN`` -> 1x1 ``CONV_2D`` to the logits -> ``RESHAPE`` ->
  ``SOFTMAX``) or the on-device DeepLabv3 tail (a global pool -> 1x1 ``CONV_2D`` ReLU
  -> ``RESIZE_BILINEAR`` back to the feature size, and a 1x1 ``CONV_2D`` ReLU on the
  features, ``CONCATENATION`` -> 1x1 ``CONV_2D`` ReLU -> [the DeepLabv3+ decoder] ->
  1x1 ``CONV_2D`` logits -> ``RESIZE_BILINEAR`` to the input size -> ``ARG_MAX``);
- the DeepLabv3+ decoder (Google's MLPerf ADE20K file): ``RESIZE_BILINEAR`` of the
  projection to the size of a block's depthwise output that a second reader, a 1x1
  ``CONV_2D`` ReLU, projects; ``CONCATENATION`` of the two -> separable convs
  (3x3 ``DEPTHWISE_CONV_2D`` ReLU -> 1x1 ``CONV_2D`` ReLU), as many as the graph has.

``QUANTIZE`` ops (re-quantisation, identity on real values) are stepped over. Every
convolution's weights are dequantised into PyTorch's layout and its output shape is
checked against TF's padding rule; anything else in the graph raises
:class:`~mtvision.errors.ConversionError` naming the op. docs/pretrained.md describes
the four graphs this was written against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtvision.convert.tflite_graph import TfliteGraph, TfliteOp, check_bias_scale
from mtvision.errors import ConversionError

__all__ = [
    "BlockLayers",
    "ClassifierTail",
    "ConvLayer",
    "DeepLabTail",
    "DecoderLayers",
    "MobileNetV2Graph",
    "read_mobilenet_v2_graph",
]

#: Channels of MobileNetV2's last stage at width 1 (the width is read from it).
LAST_STAGE_CHANNELS = 320


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of the graph with its weights dequantised to float64.

    ``weight`` is in PyTorch's layout (out, in / groups, kH, kW), ``bias`` (out,);
    ``padding`` is TF's ``"SAME"`` or ``"VALID"``, ``activation`` the fused one
    (``"NONE"``, ``"RELU"``, ``"RELU6"``).
    """

    op: TfliteOp
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    dilation: int
    groups: int
    padding: str
    activation: str

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[2]


@dataclass(frozen=True)
class BlockLayers:
    """The convolutions of one inverted residual block and whether it adds its input.

    ``depthwise_readers``: ops other than the projection that read the depthwise
    output (DeepLabv3+'s low-level projection)."""

    expand: ConvLayer | None
    depthwise: ConvLayer
    project: ConvLayer
    residual: bool
    depthwise_readers: tuple[TfliteOp, ...] = ()


@dataclass(frozen=True)
class DecoderLayers:
    """The DeepLabv3+ decoder between the ASPP projection and the logits.

    ``low_level_block``: index (0-based, over all blocks) of the block whose depthwise
    output ``low_level`` projects; ``concat_order`` names the concatenated inputs in the
    graph's order (``"encoder"``, ``"low_level"``); ``separable``: (depthwise,
    pointwise) pairs; ``resize``: the encoder upsampling's rule (:func:`resize_rule`).
    """

    low_level: ConvLayer
    low_level_block: int
    concat_order: tuple[str, ...]
    separable: tuple[tuple[ConvLayer, ConvLayer], ...]
    resize: str


@dataclass(frozen=True)
class ClassifierTail:
    """1x1 conv to 1280 -> global average -> 1x1 conv to the logits -> softmax."""

    final_conv: ConvLayer
    logits: ConvLayer
    logits_tensor: int  # the (1, 1, 1, K) tensor before RESHAPE / SOFTMAX


@dataclass(frozen=True)
class DeepLabTail:
    """The on-device DeepLabv3 head: two branches, concat, projection, logits, upsampling.

    ``concat_order`` names the branches in the order the graph concatenates them
    (``"image_pooling"``, ``"branch"``). ``align_corners`` / ``half_pixel_centers``
    are the final upsampling's; ``upsampled_size`` its output (H, W). ``decoder``: the
    DeepLabv3+ decoder, ``None`` for DeepLabv3.
    """

    branch: ConvLayer
    image_pooling: ConvLayer
    concat_order: tuple[str, ...]
    projection: ConvLayer
    logits: ConvLayer
    align_corners: bool
    half_pixel_centers: bool
    upsampled_size: tuple[int, int]
    logits_tensor: int  # the (1, h, w, K) logits at the feature stride
    decoder: DecoderLayers | None = None

    @property
    def resize(self) -> str:
        """The final upsampling's rule (:func:`resize_rule`)."""
        return resize_rule(self.align_corners, self.half_pixel_centers)


def resize_rule(align_corners: bool, half_pixel_centers: bool) -> str:
    """TFLite ``RESIZE_BILINEAR``'s source coordinates as one name: ``"align_corners"``,
    ``"half_pixel"`` (PyTorch's ``align_corners=False``) or ``"asymmetric"`` (TF1's
    legacy rule, neither flag: :func:`mtvision.ops.resize.resize_asymmetric`)."""
    if align_corners:
        return "align_corners"
    return "half_pixel" if half_pixel_centers else "asymmetric"


@dataclass(frozen=True)
class MobileNetV2Graph:
    """What :func:`read_mobilenet_v2_graph` found: input, stem, blocks and the tail."""

    graph: TfliteGraph
    input_size: tuple[int, int]
    input_scale: float
    input_zero_point: int
    stem: ConvLayer
    blocks: tuple[BlockLayers, ...]
    tail: ClassifierTail | DeepLabTail

    @property
    def width_mult(self) -> float:
        return self.blocks[-1].project.out_channels / LAST_STAGE_CHANNELS

    @property
    def output_stride(self) -> int:
        stride = self.stem.stride
        for block in self.blocks:
            stride *= block.depthwise.stride
        return stride

    @property
    def input_mean_std(self) -> tuple[float, float]:
        """The normalisation the uint8 input stands for: (x - mean) / std."""
        return float(self.input_zero_point), 1.0 / self.input_scale


class _Walker:
    """Follows the data flow of one graph; every error names the file and the op."""

    def __init__(self, graph: TfliteGraph) -> None:
        self.graph = graph

    def fail(self, message: str, op: TfliteOp | None = None):
        where = f" at {self.graph.describe(op)}" if op is not None else ""
        raise ConversionError(
            f"{self.graph.path}: not a MobileNetV2 classifier or on-device DeepLabv3(+) graph"
            f"{where}: {message}"
        )

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.graph.tensor(tensor).shape

    def readers(self, tensor: int, skip_types: Sequence[str] = ()) -> list[TfliteOp]:
        return [op for op in self.graph.consumers.get(tensor, []) if op.type not in skip_types]

    def follow_requantize(self, tensor: int) -> int:
        """Step over QUANTIZE ops that are the only reader of ``tensor``."""
        while True:
            readers = self.readers(tensor)
            if len(readers) == 1 and readers[0].type == "QUANTIZE":
                tensor = readers[0].outputs[0]
            else:
                return tensor

    def only_reader(self, tensor: int, types: Sequence[str], what: str) -> TfliteOp:
        tensor = self.follow_requantize(tensor)
        readers = self.readers(tensor)
        if len(readers) != 1 or readers[0].type not in types:
            found = [self.graph.describe(op) for op in readers] or ["nothing"]
            producer = self.graph.producers.get(tensor)
            self.fail(f"expected {what} ({'/'.join(types)}), found {found}", producer)
        return readers[0]

    def conv(self, op: TfliteOp) -> ConvLayer:
        """Dequantise a CONV_2D / DEPTHWISE_CONV_2D and check its shapes."""
        if op.type not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            self.fail("expected a convolution", op)
        options = op.options
        if options["StrideH"] != options["StrideW"]:
            self.fail("non-square strides are not supported", op)
        if options["DilationHFactor"] != options["DilationWFactor"]:
            self.fail("non-square dilations are not supported", op)
        source_index, weight_index = op.inputs[0], op.inputs[1]
        bias_index = op.inputs[2] if len(op.inputs) > 2 else -1
        source = self.graph.tensor(source_index)
        weight_tensor = self.graph.tensor(weight_index)
        if not weight_tensor.is_constant:
            self.fail("the weights are not a constant tensor", op)
        if len(source.shape) != 4 or len(weight_tensor.shape) != 4:
            self.fail("expected NHWC activations and 4-d weights", op)
        in_channels = source.shape[3]
        weight = weight_tensor.dequantize()
        if op.type == "CONV_2D":
            if weight.shape[3] != in_channels:
                self.fail(f"weights {weight.shape} do not read {in_channels} channels", op)
            weight = weight.transpose(0, 3, 1, 2)  # [O, H, W, I] -> [O, I, H, W]
            groups = 1
        else:
            if options["DepthMultiplier"] != 1 or weight.shape[3] != in_channels:
                self.fail(f"depthwise weights {weight.shape} on {in_channels} channels", op)
            weight = weight.transpose(3, 0, 1, 2)  # [1, H, W, C] -> [C, 1, H, W]
            groups = in_channels
        if weight.shape[2] != weight.shape[3]:
            self.fail("non-square kernels are not supported", op)
        out_channels = weight.shape[0]
        if bias_index >= 0:
            bias_tensor = self.graph.tensor(bias_index)
            if not bias_tensor.is_constant or bias_tensor.shape != (out_channels,):
                self.fail(f"bias {bias_tensor.shape} is not a constant of {out_channels}", op)
            check_bias_scale(self.graph, op)
            bias = bias_tensor.dequantize()
        else:
            bias = np.zeros(out_channels)
        layer = ConvLayer(
            op=op,
            weight=weight,
            bias=bias,
            stride=int(options["StrideH"]),
            dilation=int(options["DilationHFactor"]),
            groups=groups,
            padding=str(options["Padding"]),
            activation=str(options["FusedActivationFunction"]),
        )
        self.check_output_shape(layer, source.shape)
        return layer

    def check_output_shape(self, layer: ConvLayer, source_shape: tuple[int, ...]) -> None:
        n, height, width, _ = source_shape
        effective = (layer.kernel_size - 1) * layer.dilation + 1
        if layer.padding == "SAME":
            expected = [-(-size // layer.stride) for size in (height, width)]
        else:
            expected = [-(-(size - effective + 1) // layer.stride) for size in (height, width)]
        expected_shape = (n, *expected, layer.out_channels)
        actual = self.shape(layer.op.outputs[0])
        if actual != expected_shape:
            self.fail(f"output shape {actual}, expected {expected_shape}", layer.op)

    def expect(self, layer: ConvLayer, kernel: int, activation: str, what: str) -> ConvLayer:
        if layer.kernel_size != kernel or layer.activation != activation:
            self.fail(
                f"expected {what}: {kernel}x{kernel} with {activation}, found "
                f"{layer.kernel_size}x{layer.kernel_size} with {layer.activation}",
                layer.op,
            )
        return layer

    def global_pool(self, op: TfliteOp, features: int) -> int:
        """Check an AVERAGE_POOL_2D / MEAN averages the whole (1, h, w, C) map; its output."""
        _, height, width, channels = self.shape(features)
        if op.type == "AVERAGE_POOL_2D":
            options = op.options
            window = (options["FilterHeight"], options["FilterWidth"])
            if window != (height, width) or options["Padding"] != "VALID":
                self.fail(f"the average pool {window} is not global over {(height, width)}", op)
        elif op.type == "MEAN":
            axes = sorted(int(a) % 4 for a in self.graph.tensor(op.inputs[1]).data.reshape(-1))
            if axes != [1, 2]:
                self.fail(f"MEAN over axes {axes}, expected the spatial axes [1, 2]", op)
        else:
            self.fail("expected a global average (AVERAGE_POOL_2D or MEAN)", op)
        if self.shape(op.outputs[0]) != (1, 1, 1, channels):
            self.fail(f"pooled shape {self.shape(op.outputs[0])}", op)
        return op.outputs[0]


def read_mobilenet_v2_graph(graph: TfliteGraph) -> MobileNetV2Graph:
    """Walk ``graph`` from its input and return its layers, dequantised and checked.

    Raises:
        ConversionError: the graph is not a MobileNetV2 classifier or on-device
            DeepLabv3 (the message names the first op that does not fit).
    """
    walk = _Walker(graph)
    if len(graph.inputs) != 1:
        walk.fail(f"expected one input, found {len(graph.inputs)}")
    (input_index,) = graph.inputs
    source = graph.tensor(input_index)
    if (
        source.dtype not in (np.uint8, np.int8)
        or len(source.shape) != 4
        or source.shape[0] != 1
        or source.shape[3] != 3
        or source.scale.size != 1
    ):
        walk.fail(
            f"expected a quantised (1, H, W, 3) image input, found {source.dtype} {source.shape}"
        )
    stem_op = walk.only_reader(input_index, ["CONV_2D"], "the stem convolution")
    stem = walk.expect(walk.conv(stem_op), 3, "RELU6", "the 3x3 ReLU6 stem")
    if stem.stride != 2:
        walk.fail("the stem is not stride 2", stem.op)

    blocks: list[BlockLayers] = []
    x = stem.op.outputs[0]
    while True:
        x = walk.follow_requantize(x)
        block = _read_block(walk, x)
        if block is None:
            break
        blocks.append(block)
        x = _block_output(walk, block, x)
    if not blocks:
        walk.fail("no inverted residual block after the stem", stem.op)

    tail = _read_tail(walk, x, blocks)
    height, width = source.shape[1:3]
    return MobileNetV2Graph(
        graph=graph,
        input_size=(height, width),
        input_scale=float(source.scale[0]),
        input_zero_point=int(source.zero_point[0]) if source.zero_point.size else 0,
        stem=stem,
        blocks=tuple(blocks),
        tail=tail,
    )


def _read_block(walk: _Walker, x: int) -> BlockLayers | None:
    """The block starting at tensor ``x``, or None when ``x`` feeds no block."""
    convs = walk.readers(x, skip_types=("ADD",))
    expand = None
    depthwise_op = None
    for op in convs:
        if op.type == "DEPTHWISE_CONV_2D":
            depthwise_op = op
        elif op.type == "CONV_2D" and op.options["FusedActivationFunction"] == "RELU6":
            following = walk.readers(walk.follow_requantize(op.outputs[0]))
            if len(following) == 1 and following[0].type == "DEPTHWISE_CONV_2D":
                expand = walk.expect(walk.conv(op), 1, "RELU6", "a 1x1 ReLU6 expansion")
                depthwise_op = following[0]
    if depthwise_op is None:
        return None
    depthwise = walk.expect(walk.conv(depthwise_op), 3, "RELU6", "a 3x3 ReLU6 depthwise conv")
    # Besides the projection (linear), the depthwise output may feed a decoder (ReLU).
    readers = walk.readers(walk.follow_requantize(depthwise.op.outputs[0]))
    linear = [
        op
        for op in readers
        if op.type == "CONV_2D" and op.options["FusedActivationFunction"] == "NONE"
    ]
    if len(linear) == 1:
        project_op = linear[0]
    else:
        project_op = walk.only_reader(
            depthwise.op.outputs[0], ["CONV_2D"], "the 1x1 projection (one linear CONV_2D)"
        )
    depthwise_readers = tuple(op for op in readers if op is not project_op)
    project = walk.expect(walk.conv(project_op), 1, "NONE", "a linear 1x1 projection")
    out = walk.follow_requantize(project.op.outputs[0])
    # The block's own shortcut adds its input x; a later ADD may read ``out`` as the
    # next block's shortcut.
    adds = [op for op in walk.readers(out) if op.type == "ADD" and x in op.inputs]
    for op in adds:
        if op.options["FusedActivationFunction"] != "NONE":
            walk.fail("the shortcut ADD has an activation", op)
    residual = bool(adds)
    return BlockLayers(
        expand=expand,
        depthwise=depthwise,
        project=project,
        residual=residual,
        depthwise_readers=depthwise_readers,
    )


def _block_output(walk: _Walker, block: BlockLayers, x: int) -> int:
    out = walk.follow_requantize(block.project.op.outputs[0])
    if block.residual:
        (add,) = [op for op in walk.readers(out) if op.type == "ADD" and x in op.inputs]
        if walk.shape(add.outputs[0]) != walk.shape(x):
            walk.fail(f"the shortcut adds {walk.shape(x)}", add)
        out = add.outputs[0]
    return out


def _read_tail(walk: _Walker, x: int, blocks: list[BlockLayers]) -> ClassifierTail | DeepLabTail:
    readers = walk.readers(x)
    pools = [op for op in readers if op.type in ("AVERAGE_POOL_2D", "MEAN")]
    convs = [op for op in readers if op.type == "CONV_2D"]
    if len(readers) == 1 and len(convs) == 1:
        return _read_classifier_tail(walk, convs[0])
    if len(readers) == 2 and len(pools) == 1 and len(convs) == 1:
        return _read_deeplab_tail(walk, x, pools[0], convs[0], blocks)
    found = [walk.graph.describe(op) for op in readers] or ["nothing"]
    walk.fail(
        "after the last block expected a 1x1 conv (classifier) or a global pool and a 1x1 "
        f"conv (DeepLabv3 on-device head, no atrous branches), found {found}",
        walk.graph.producers.get(x),
    )


def _read_classifier_tail(walk: _Walker, final_op: TfliteOp) -> ClassifierTail:
    final_conv = walk.expect(walk.conv(final_op), 1, "RELU6", "the final 1x1 ReLU6 conv")
    features = walk.follow_requantize(final_conv.op.outputs[0])
    pool_op = walk.only_reader(features, ["AVERAGE_POOL_2D", "MEAN"], "the global average")
    pooled = walk.global_pool(pool_op, features)
    logits_op = walk.only_reader(pooled, ["CONV_2D"], "the 1x1 logits conv")
    logits = walk.expect(walk.conv(logits_op), 1, "NONE", "the linear 1x1 logits conv")
    reshape = walk.only_reader(logits.op.outputs[0], ["RESHAPE", "SQUEEZE"], "the flattening")
    num_classes = logits.out_channels
    if walk.shape(reshape.outputs[0]) != (1, num_classes):
        walk.fail(f"flattened to {walk.shape(reshape.outputs[0])}", reshape)
    softmax = walk.only_reader(reshape.outputs[0], ["SOFTMAX"], "the softmax")
    if softmax.options.get("Beta", 1.0) != 1.0:
        walk.fail("softmax with beta != 1", softmax)
    if walk.follow_requantize(softmax.outputs[0]) not in walk.graph.outputs:
        walk.fail("the softmax is not the graph's output", softmax)
    return ClassifierTail(final_conv=final_conv, logits=logits, logits_tensor=logits.op.outputs[0])


def _read_deeplab_tail(
    walk: _Walker, x: int, pool_op: TfliteOp, branch_op: TfliteOp, blocks: list[BlockLayers]
) -> DeepLabTail:
    _, height, width, _ = walk.shape(x)
    pooled = walk.global_pool(pool_op, x)
    pool_conv_op = walk.only_reader(pooled, ["CONV_2D"], "the image-pooling 1x1 conv")
    image_pooling = walk.expect(walk.conv(pool_conv_op), 1, "RELU", "the image-pooling conv")
    resize = walk.only_reader(image_pooling.op.outputs[0], ["RESIZE_BILINEAR"], "its upsampling")
    if walk.shape(resize.outputs[0])[1:3] != (height, width):
        walk.fail(f"the pooled branch is resized to {walk.shape(resize.outputs[0])}", resize)
    branch = walk.expect(walk.conv(branch_op), 1, "RELU", "the 1x1 ReLU branch")
    concat = walk.only_reader(branch.op.outputs[0], ["CONCATENATION"], "the branch concat")
    if concat.options["Axis"] % 4 != 3 or concat.options["FusedActivationFunction"] != "NONE":
        walk.fail("expected a plain concatenation along channels", concat)
    pooled_branch = walk.follow_requantize(resize.outputs[0])
    names = {pooled_branch: "image_pooling", branch.op.outputs[0]: "branch"}
    if sorted(concat.inputs) != sorted(names):
        walk.fail(
            f"the concat joins {len(concat.inputs)} tensors; only the image-pooling and the 1x1 "
            "branch are supported (no atrous ASPP branches)",
            concat,
        )
    projection_op = walk.only_reader(concat.outputs[0], ["CONV_2D"], "the 1x1 projection")
    projection = walk.expect(walk.conv(projection_op), 1, "RELU", "the 1x1 ReLU projection")
    encoded = walk.follow_requantize(projection.op.outputs[0])
    decoder = None
    if [op.type for op in walk.readers(encoded)] == ["RESIZE_BILINEAR"]:
        decoder, encoded = _read_decoder(walk, encoded, blocks)
    logits_op = walk.only_reader(encoded, ["CONV_2D"], "the logits conv")
    logits = walk.expect(walk.conv(logits_op), 1, "NONE", "the linear 1x1 logits conv")

    # One or more bilinear resizes (TF-DeepLab resizes to the logits' own size, then to
    # the input's), then the per-pixel argmax.
    tensor, resizes = logits.op.outputs[0], []
    while True:
        op = walk.only_reader(tensor, ["RESIZE_BILINEAR", "ARG_MAX"], "upsampling or argmax")
        if op.type == "ARG_MAX":
            break
        resizes.append(op)
        tensor = op.outputs[0]
    upsampling = [op for op in resizes if walk.shape(op.outputs[0]) != walk.shape(op.inputs[0])]
    if len(upsampling) != 1:
        walk.fail(f"expected one upsampling of the logits, found {len(upsampling)}", logits.op)
    (upsample,) = upsampling
    axis = int(walk.graph.tensor(op.inputs[1]).data)
    if axis % 4 != 3 or op.outputs[0] not in walk.graph.outputs:
        walk.fail("expected the graph's output to be the argmax over classes", op)
    return DeepLabTail(
        branch=branch,
        image_pooling=image_pooling,
        concat_order=tuple(names[i] for i in concat.inputs),
        projection=projection,
        logits=logits,
        align_corners=bool(upsample.options["AlignCorners"]),
        half_pixel_centers=bool(upsample.options["HalfPixelCenters"]),
        upsampled_size=tuple(walk.shape(upsample.outputs[0])[1:3]),
        logits_tensor=logits.op.outputs[0],
        decoder=decoder,
    )


def _read_decoder(
    walk: _Walker, encoded: int, blocks: list[BlockLayers]
) -> tuple[DecoderLayers, int]:
    """The DeepLabv3+ decoder reading the ASPP output ``encoded``; returns it and the
    tensor the logits conv reads."""
    (resize,) = walk.readers(encoded)
    upsampled = walk.follow_requantize(resize.outputs[0])
    concat = walk.only_reader(upsampled, ["CONCATENATION"], "the decoder's concat")
    if concat.options["Axis"] % 4 != 3 or concat.options["FusedActivationFunction"] != "NONE":
        walk.fail("expected a plain concatenation along channels", concat)
    if len(concat.inputs) != 2 or upsampled not in concat.inputs:
        walk.fail("the decoder concatenates the upsampled encoder and one low-level map", concat)
    (concat_input,) = [tensor for tensor in concat.inputs if tensor != upsampled]
    other = concat_input
    producer = walk.graph.producers.get(other)
    while producer is not None and producer.type == "QUANTIZE":
        other = producer.inputs[0]
        producer = walk.graph.producers.get(other)
    readers_of_blocks = {
        op.outputs[0]: index for index, block in enumerate(blocks) for op in block.depthwise_readers
    }
    if producer is None or other not in readers_of_blocks:
        walk.fail(
            "the decoder's low-level input is not a 1x1 conv of a block's depthwise output",
            concat,
        )
    block_index = readers_of_blocks[other]
    low_level = walk.expect(walk.conv(producer), 1, "RELU", "the 1x1 ReLU low-level projection")
    if walk.shape(upsampled)[1:3] != walk.shape(other)[1:3]:
        walk.fail(
            f"the encoder is resized to {walk.shape(upsampled)}, the low-level map is "
            f"{walk.shape(other)}",
            resize,
        )
    names = {upsampled: "encoder", concat_input: "low_level"}
    separable = []
    tensor = concat.outputs[0]
    while True:
        op = walk.only_reader(
            tensor, ["DEPTHWISE_CONV_2D", "CONV_2D"], "a separable conv or logits"
        )
        if op.type == "CONV_2D":
            break
        depthwise = walk.expect(walk.conv(op), 3, "RELU", "a 3x3 ReLU depthwise conv")
        pointwise_op = walk.only_reader(op.outputs[0], ["CONV_2D"], "the 1x1 pointwise conv")
        pointwise = walk.expect(walk.conv(pointwise_op), 1, "RELU", "a 1x1 ReLU pointwise conv")
        separable.append((depthwise, pointwise))
        tensor = walk.follow_requantize(pointwise.op.outputs[0])
    if not separable:
        walk.fail("the decoder has no separable conv after its concat", concat)
    decoder = DecoderLayers(
        low_level=low_level,
        low_level_block=block_index,
        concat_order=tuple(names[i] for i in concat.inputs),
        separable=tuple(separable),
        resize=resize_rule(
            bool(resize.options["AlignCorners"]), bool(resize.options["HalfPixelCenters"])
        ),
    )
    return decoder, tensor
