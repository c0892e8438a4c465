"""Google's TFLite MobileNetV2 classifier and DeepLabv3 segmenter as mtvision models.

The graph of the file (:class:`~mtvision.models.tflite_graph.TfliteGraph`) is walked
along its data flow from the input, not matched by tensor names (TF1 and TF2 exports
name the same layers differently):

- the stem: a 3x3 stride-2 ``CONV_2D`` with ReLU6;
- inverted residual blocks, each ``[1x1 CONV_2D ReLU6] -> 3x3 DEPTHWISE_CONV_2D ReLU6
  -> 1x1 CONV_2D`` plus an ``ADD`` of the block input when it has a shortcut;
- then either the classifier tail (1x1 ``CONV_2D`` ReLU6 to 1280 channels -> global
  ``AVERAGE_POOL_2D`` or ``MEAN`` -> 1x1 ``CONV_2D`` to the logits -> ``RESHAPE`` ->
  ``SOFTMAX``) or the on-device DeepLabv3 tail (a global pool -> 1x1 ``CONV_2D`` ReLU
  -> ``RESIZE_BILINEAR`` back to the feature size, and a 1x1 ``CONV_2D`` ReLU on the
  features, ``CONCATENATION`` -> 1x1 ``CONV_2D`` ReLU -> 1x1 ``CONV_2D`` logits ->
  ``RESIZE_BILINEAR`` to the input size -> ``ARG_MAX``).

``QUANTIZE`` ops (re-quantisation, identity on real values) are stepped over. Every
layer's kernel, stride, dilation, padding rule, activation and tensor shapes are
checked against the mtvision module it is loaded into, and the graph's input
quantisation against the model's normalisation; anything else raises
:class:`~mtvision.errors.ConversionError` naming the op.

BatchNorm is folded into the TFLite convolutions. The converted model holds the folded
weights in its convs and carries the folded bias in BatchNorm layers that are the
identity in eval mode: weight 1, bias = the folded bias, running_mean 0, running_var
``1 - eps`` (the BatchNorm's own eps), so that ``(x - 0) / sqrt(1 - eps + eps) * 1 +
bias`` is exactly ``x + bias``. This is exact only in eval mode: training with batch
statistics replaces the folded scale, so fine-tuning needs the BatchNorms frozen
(``norm_eval=True`` on the backbone) or their statistics re-estimated first.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtvision.data.normalization import INCEPTION_MEAN_RGB, INCEPTION_STD_RGB
from mtvision.errors import ConversionError
from mtvision.layers.same_padding import SamePad2d, needs_dynamic_padding
from mtvision.models.tflite_graph import TfliteGraph, TfliteOp, check_bias_scale
from mtvision.utils.atomic_files import atomic_write_bytes

__all__ = [
    "BlockLayers",
    "ClassifierTail",
    "ConvLayer",
    "DeepLabTail",
    "MobileNetV2Graph",
    "convert_tflite",
    "read_label_file",
    "read_mobilenet_v2_graph",
    "save_checkpoint",
]

_ACTIVATION_MODULES = {"RELU6": nn.ReLU6, "RELU": nn.ReLU, "NONE": nn.Identity}
#: Registered builder names of the MobileNetV2 classifier, by width.
_CLASSIFIER_NAMES = {
    1.0: "mobilenet_v2",
    1.4: "mobilenet_v2_140",
    0.75: "mobilenet_v2_075",
    0.5: "mobilenet_v2_050",
    0.35: "mobilenet_v2_035",
}
_DEEPLAB_NAME = "deeplabv3_mobilenet_v2"
_LAST_STAGE_CHANNELS = 320
# (x - 127.5) / 127.5 against the file's (q - zero_point) * scale: one grey level and 1%.
_MEAN_TOLERANCE = 1.0
_STD_TOLERANCE = 0.01


# ------------------------------------------------------------------ graph side


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
    """The convolutions of one inverted residual block and whether it adds its input."""

    expand: ConvLayer | None
    depthwise: ConvLayer
    project: ConvLayer
    residual: bool


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
    are the final upsampling's; ``upsampled_size`` its output (H, W).
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
        return self.blocks[-1].project.out_channels / _LAST_STAGE_CHANNELS

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
            f"{self.graph.path}: not a MobileNetV2 classifier or on-device DeepLabv3 graph"
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

    tail = _read_tail(walk, x)
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
    project_op = walk.only_reader(depthwise.op.outputs[0], ["CONV_2D"], "the 1x1 projection")
    project = walk.expect(walk.conv(project_op), 1, "NONE", "a linear 1x1 projection")
    out = walk.follow_requantize(project.op.outputs[0])
    # The block's own shortcut adds its input x; a later ADD may read ``out`` as the
    # next block's shortcut.
    adds = [op for op in walk.readers(out) if op.type == "ADD" and x in op.inputs]
    for op in adds:
        if op.options["FusedActivationFunction"] != "NONE":
            walk.fail("the shortcut ADD has an activation", op)
    residual = bool(adds)
    return BlockLayers(expand=expand, depthwise=depthwise, project=project, residual=residual)


def _block_output(walk: _Walker, block: BlockLayers, x: int) -> int:
    out = walk.follow_requantize(block.project.op.outputs[0])
    if block.residual:
        (add,) = [op for op in walk.readers(out) if op.type == "ADD" and x in op.inputs]
        if walk.shape(add.outputs[0]) != walk.shape(x):
            walk.fail(f"the shortcut adds {walk.shape(x)}", add)
        out = add.outputs[0]
    return out


def _read_tail(walk: _Walker, x: int) -> ClassifierTail | DeepLabTail:
    readers = walk.readers(x)
    pools = [op for op in readers if op.type in ("AVERAGE_POOL_2D", "MEAN")]
    convs = [op for op in readers if op.type == "CONV_2D"]
    if len(readers) == 1 and len(convs) == 1:
        return _read_classifier_tail(walk, convs[0])
    if len(readers) == 2 and len(pools) == 1 and len(convs) == 1:
        return _read_deeplab_tail(walk, x, pools[0], convs[0])
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
    walk: _Walker, x: int, pool_op: TfliteOp, branch_op: TfliteOp
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
    logits_op = walk.only_reader(projection.op.outputs[0], ["CONV_2D"], "the logits conv")
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
    )


# ------------------------------------------------------------------ model side


def infer_model(parsed: MobileNetV2Graph, num_classes: int | None = None) -> tuple[str, dict]:
    """The ``create_model`` name and keyword arguments that build the graph's network.

    ``num_classes`` may drop the classifier's background row (1001 -> 1000).
    """
    from mtvision.backbones.mobilenetv2 import MobileNetV2

    graph_channels = [parsed.stem.out_channels] + [b.project.out_channels for b in parsed.blocks]
    width = parsed.width_mult
    round_nearest = None
    for candidate in (8, 1):
        backbone = MobileNetV2(width_mult=width, round_nearest=candidate, out_features=("stage7",))
        channels = [backbone.stem.out_channels] + [
            block.out_channels for i in range(1, 8) for block in getattr(backbone, f"stage{i}")
        ]
        if channels == graph_channels:
            round_nearest = candidate
            break
    if round_nearest is None:
        raise ConversionError(
            f"{parsed.graph.path}: the channel counts {graph_channels} are not MobileNetV2's at "
            f"width {width} (channels rounded to multiples of 8 or of 1)"
        )
    preprocessor = dict(type="DataPreprocessor", mean=INCEPTION_MEAN_RGB, std=INCEPTION_STD_RGB)
    kwargs: dict = dict(padding="same", data_preprocessor=preprocessor)
    if round_nearest != 8:
        kwargs["round_nearest"] = round_nearest
    if isinstance(parsed.tail, ClassifierTail):
        if width not in _CLASSIFIER_NAMES:
            raise ConversionError(f"{parsed.graph.path}: no classifier of width {width}")
        if parsed.output_stride != 32:
            raise ConversionError(
                f"{parsed.graph.path}: classifier at output stride "
                f"{parsed.output_stride}, expected 32"
            )
        kwargs["num_classes"] = num_classes or parsed.tail.logits.out_channels
        return _CLASSIFIER_NAMES[width], kwargs
    kwargs.update(
        num_classes=num_classes or parsed.tail.logits.out_channels,
        width_mult=width,
        output_stride=parsed.output_stride,
        head="ondevice",
        channels=parsed.tail.branch.out_channels,
        align_corners=parsed.tail.align_corners,
    )
    return _DEEPLAB_NAME, kwargs


class _Loader:
    """Collects the converted state dict, checking each graph layer against its module."""

    def __init__(self, parsed: MobileNetV2Graph, model: nn.Module) -> None:
        self.parsed = parsed
        self.model = model
        self.module_names = {module: name for name, module in model.named_modules()}
        self.state: dict[str, torch.Tensor] = {}

    def fail(self, layer: ConvLayer | None, module: nn.Module | None, message: str):
        where = self.parsed.graph.describe(layer.op) if layer is not None else "the input"
        target = (
            f" -> {type(self.model).__name__}.{self.module_names.get(module, '?')}"
            if module is not None
            else ""
        )
        raise ConversionError(f"{self.parsed.graph.path}: {where}{target}: {message}")

    def put(self, module: nn.Module, name: str, value: np.ndarray | torch.Tensor) -> None:
        key = f"{self.module_names[module]}.{name}"
        target = self.model.state_dict()[key]
        value = torch.as_tensor(value, dtype=target.dtype)
        if value.shape != target.shape:
            self.fail(None, module, f"{name} {tuple(value.shape)} vs model {tuple(target.shape)}")
        self.state[key] = value

    def conv_norm_act(
        self, module: nn.Module, layer: ConvLayer, weight: np.ndarray | None = None
    ) -> None:
        """Load a conv + folded BN into a ConvNormAct (BN as identity carrying the bias)."""
        conv, bn, act = module.conv, module.bn, module.act
        self.check_conv(module, conv, layer)
        if type(act) is not _ACTIVATION_MODULES[layer.activation]:
            self.fail(
                layer, module, f"activation {type(act).__name__}, the graph has {layer.activation}"
            )
        if conv.bias is not None:
            self.fail(layer, module, "a ConvNormAct conv with a bias")
        self.put(conv, "weight", layer.weight if weight is None else weight)
        self.put(bn, "weight", np.ones(layer.out_channels))
        self.put(bn, "bias", layer.bias)
        self.put(bn, "running_mean", np.zeros(layer.out_channels))
        self.put(bn, "running_var", np.full(layer.out_channels, 1.0 - bn.eps))
        self.put(bn, "num_batches_tracked", torch.tensor(0))

    def check_conv(self, module: nn.Module, conv: nn.Conv2d, layer: ConvLayer) -> None:
        expected = (layer.stride,) * 2, (layer.dilation,) * 2, layer.groups
        if (conv.stride, conv.dilation, conv.groups) != expected:
            self.fail(
                layer,
                module,
                f"stride/dilation/groups {conv.stride}/{conv.dilation}/{conv.groups}, the graph "
                f"has {expected[0]}/{expected[1]}/{expected[2]}",
            )
        if tuple(conv.weight.shape) != layer.weight.shape:
            self.fail(
                layer, module, f"weight {tuple(conv.weight.shape)} vs graph {layer.weight.shape}"
            )
        kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
        pad = getattr(module, "pad", None)
        if kernel == 1 and stride == 1:
            return  # no padding under any rule
        if layer.padding != "SAME":
            self.fail(layer, module, f"{layer.padding} padding is not supported")
        if needs_dynamic_padding(kernel, stride, dilation):
            if not isinstance(pad, SamePad2d) or conv.padding != (0, 0):
                self.fail(
                    layer, module, "the graph pads TF 'SAME'; build the model with padding='same'"
                )
        elif conv.padding != (dilation * (kernel - 1) // 2,) * 2:
            self.fail(layer, module, f"padding {conv.padding} differs from TF 'SAME'")

    def backbone(self, backbone: nn.Module) -> None:
        parsed = self.parsed
        self.conv_norm_act(backbone.stem, parsed.stem)
        blocks = [block for i in range(1, 8) for block in getattr(backbone, f"stage{i}")]
        if len(blocks) != len(parsed.blocks):
            self.fail(None, backbone, f"{len(blocks)} blocks, the graph has {len(parsed.blocks)}")
        for block, layers in zip(blocks, parsed.blocks, strict=True):
            if (block.expand is None) != (layers.expand is None):
                self.fail(layers.depthwise, block, "expansion layer present in only one of them")
            if block.use_residual != layers.residual:
                self.fail(
                    layers.project,
                    block,
                    f"shortcut {block.use_residual} vs graph {layers.residual}",
                )
            if layers.expand is not None:
                self.conv_norm_act(block.expand, layers.expand)
            self.conv_norm_act(block.depthwise, layers.depthwise)
            self.conv_norm_act(block.project, layers.project)

    def classifier(self, model: nn.Module, tail: ClassifierTail) -> None:
        self.conv_norm_act(model.backbone.final_conv, tail.final_conv)
        head = model.head
        if head.in_spec.name != "final_conv":
            self.fail(tail.logits, head, f"the head reads {head.in_spec.name!r}, not 'final_conv'")
        weight, bias = tail.logits.weight[:, :, 0, 0], tail.logits.bias
        graph_classes, model_classes = weight.shape[0], head.fc.out_features
        if model_classes == graph_classes - 1:  # drop TF-slim's background row 0
            weight, bias = weight[1:], bias[1:]
        elif model_classes != graph_classes:
            self.fail(tail.logits, head, f"{model_classes} classes, the graph has {graph_classes}")
        self.put(head.fc, "weight", weight)
        self.put(head.fc, "bias", bias)

    def deeplab(self, model: nn.Module, tail: DeepLabTail) -> None:
        head = model.decode_head
        aspp = head.aspp
        if head.in_spec.name != "stage7":
            self.fail(tail.branch, head, f"the head reads {head.in_spec.name!r}, not 'stage7'")
        if aspp.atrous_rates:
            self.fail(
                tail.branch,
                aspp,
                f"atrous rates {aspp.atrous_rates}; the graph has none (head='ondevice')",
            )
        if bool(model.align_corners) != tail.align_corners or tail.half_pixel_centers:
            self.fail(
                tail.logits,
                model,
                f"align_corners={model.align_corners}; the graph upsamples the logits with "
                f"align_corners={tail.align_corners}, half_pixel_centers={tail.half_pixel_centers}",
            )
        branch, pooling = aspp.branches[0], aspp.branches[-1]
        self.conv_norm_act(branch, tail.branch)
        self.conv_norm_act(pooling.conv, tail.image_pooling)
        # The graph concatenates [image pooling, 1x1 branch]; mtvision's ASPP
        # [1x1 branch, image pooling]. Reordering the projection's input channels
        # to match is exact.
        width = tail.branch.out_channels
        blocks = {
            name: tail.projection.weight[:, i * width : (i + 1) * width]
            for i, name in enumerate(tail.concat_order)
        }
        reordered = np.concatenate([blocks["branch"], blocks["image_pooling"]], axis=1)
        self.conv_norm_act(aspp.project, tail.projection, weight=reordered)
        classifier = head.classifier
        self.check_conv(head, classifier, tail.logits)
        if tail.logits.weight.shape[0] != head.num_classes:
            self.fail(
                tail.logits,
                head,
                f"{head.num_classes} classes vs graph {tail.logits.weight.shape[0]}",
            )
        self.put(classifier, "weight", tail.logits.weight)
        self.put(classifier, "bias", tail.logits.bias)

    def preprocessing(self) -> None:
        """The model's normalisation must be what the file's uint8 input means."""
        preprocessor = getattr(self.model, "data_preprocessor", None)
        mean = getattr(preprocessor, "mean", None)
        std = getattr(preprocessor, "std", None)
        graph_mean, graph_std = self.parsed.input_mean_std
        if mean is None or std is None or getattr(preprocessor, "_channel_conversion", False):
            self.fail(None, None, "the model's data_preprocessor must normalise RGB with mean/std")
        mean, std = mean.flatten().tolist(), std.flatten().tolist()
        if any(abs(m - graph_mean) > _MEAN_TOLERANCE for m in mean) or any(
            abs(s / graph_std - 1) > _STD_TOLERANCE for s in std
        ):
            self.fail(
                None,
                None,
                f"the model normalises with mean {mean}, std {std}; the file's uint8 input "
                f"means (x - {graph_mean:g}) / {graph_std:g} (set the data_preprocessor's "
                f"mean/std to {INCEPTION_MEAN_RGB[0]})",
            )


def read_label_file(path: str | os.PathLike, num_classes: int) -> list[str]:
    """Class names, one per line, up to the first blank line (label files may end with notes).

    Raises:
        FileNotFoundError: no such file.
        ConversionError: the file does not name ``num_classes`` classes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    names: list[str] = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            if not line.strip():
                if names:
                    break
                continue
            names.append(line.strip())
    if len(names) != num_classes:
        raise ConversionError(
            f"{path}: names {len(names)} classes (lines up to the first blank line), the model "
            f"has {num_classes} outputs"
        )
    return names


def convert_tflite(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    num_classes: int | None = None,
    labels: str | os.PathLike | None = None,
) -> tuple[nn.Module, dict]:
    """Convert a TFLite MobileNetV2 classifier or on-device DeepLabv3 file.

    Args:
        path: the ``.tflite`` file.
        model: the model to load into (e.g. built from a config); ``None`` builds the
            one the graph describes with ``mtvision.create_model``.
        num_classes: with ``model=None``, 1000 drops the classifier's background row.
        labels: a label file (one class name per line) for ``meta["dataset_meta"]``;
            a 1001-line ImageNet file also names a 1000-class head (line i + 1 is
            class i). DeepLab defaults to the PASCAL VOC names.

    Returns:
        ``(model, meta)``: the model in eval mode with the converted weights, and the
        checkpoint's ``meta`` (see :func:`save_checkpoint`).

    Raises:
        ConversionError: the file is not such a graph, or does not fit ``model``.
    """
    from mtvision.models.factory import create_model

    graph = TfliteGraph(path)
    parsed = read_mobilenet_v2_graph(graph)
    name, kwargs = infer_model(parsed, num_classes)
    if model is None:
        model = create_model(name, **kwargs)
    loader = _Loader(parsed, model)
    loader.preprocessing()
    loader.backbone(model.backbone)
    if isinstance(parsed.tail, ClassifierTail):
        loader.classifier(model, parsed.tail)
        outputs = model.head.num_classes
    else:
        loader.deeplab(model, parsed.tail)
        outputs = model.decode_head.num_classes
    state = model.state_dict()
    not_converted = [key for key in state if key not in loader.state]
    _check_unconverted_modules_unused(parsed, model, not_converted)
    state.update(loader.state)
    model.load_state_dict(state)
    model.eval()

    classes = _class_names(parsed, labels, outputs)
    graph_mean, graph_std = parsed.input_mean_std
    preprocessor = model.data_preprocessor
    with open(graph.path, "rb") as file:
        digest = hashlib.sha256(file.read()).hexdigest()
    meta = {
        "model": {"name": name, "kwargs": {**kwargs, "num_classes": outputs}},
        "dataset_meta": {"classes": classes} if classes is not None else {},
        "preprocessing": {
            "color_order": "RGB",
            "mean": preprocessor.mean.flatten().tolist(),
            "std": preprocessor.std.flatten().tolist(),
            "input_size": list(parsed.input_size),
        },
        "converted_from": {
            "file": os.path.basename(graph.path),
            "sha256": digest,
            "input": f"uint8 (1, {parsed.input_size[0]}, {parsed.input_size[1]}, 3) RGB, real "
            f"value (x - {graph_mean:g}) / {graph_std:g}",
            "output_stride": parsed.output_stride,
        },
        "batch_norm": (
            "folded into the convs by TFLite; each BatchNorm holds weight 1, bias = folded "
            "bias, running_mean 0, running_var 1 - eps: exact in eval mode only, fine-tune "
            "with norm_eval=True (frozen BN) or re-estimate the statistics first"
        ),
        "not_converted": not_converted,
    }
    return model, meta


def _check_unconverted_modules_unused(
    parsed: MobileNetV2Graph, model: nn.Module, not_converted: list[str]
) -> None:
    """Raise unless every tensor the file lacks belongs to a module the forward never runs
    (DeepLab's ``backbone.final_conv``, kept so that whole-backbone weights still load)."""
    owners = {key.rsplit(".", 2)[0] for key in not_converted if "num_batches_tracked" not in key}
    owners |= {key.rsplit(".", 1)[0] for key in not_converted}
    ran: set[str] = set()
    names = {module: name for name, module in model.named_modules()}
    handles = [
        module.register_forward_hook(lambda m, _i, _o: ran.add(names[m]))
        for module in model.modules()
    ]
    try:
        with torch.no_grad():
            model.eval()(
                torch.zeros(1, 3, 2 * parsed.output_stride + 1, 2 * parsed.output_stride + 1),
                mode="tensor",
            )
    finally:
        for handle in handles:
            handle.remove()
    used = sorted(owner for owner in owners if owner in ran)
    if used:
        raise ConversionError(
            f"{parsed.graph.path}: the model runs layers the file has no weights for: "
            f"{', '.join(used[:5])}"
        )


def _class_names(parsed: MobileNetV2Graph, labels, outputs: int) -> list[str] | None:
    graph_outputs = parsed.tail.logits.out_channels
    if labels is not None:
        names = read_label_file(labels, graph_outputs)
        return names[graph_outputs - outputs :]
    if isinstance(parsed.tail, DeepLabTail) and outputs == 21:
        from mtvision.data.voc_segmentation import VOC_CLASSES

        return list(VOC_CLASSES)
    return None


def save_checkpoint(model: nn.Module, meta: dict, out: str | os.PathLike) -> str:
    """Write ``{"meta": meta, "state_dict": model.state_dict()}`` to ``out`` atomically
    (mmengine's checkpoint layout: ``load_from``, ``tools/eval.py`` and
    ``create_model(name, checkpoint=out)`` read it). Returns ``out`` as a string."""
    out = os.fspath(out)
    buffer = io.BytesIO()
    torch.save({"meta": meta, "state_dict": model.state_dict()}, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return out
