"""Google's TFLite MobileNetV2 classifier and DeepLabv3 / DeepLabv3+ segmenters as mtvision
models.

The file's layers (:func:`~mtvision.convert.tflite_mobilenet_graph.read_mobilenet_v2_graph`)
are loaded into an mtvision model, built from a config or from what the graph
describes (:func:`infer_model`). Every layer's kernel, stride, dilation, padding rule,
activation and weight shape is checked against the module it is loaded into, and the
graph's input quantisation against the model's normalisation; a mismatch raises
:class:`~mtvision.errors.ConversionError` naming the op and the module.

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

import numpy as np
import torch
from torch import nn

from mtvision.convert.int8_emulation import META_KEY as INT8_META_KEY
from mtvision.convert.int8_emulation import int8_record
from mtvision.convert.tflite_graph import TfliteGraph
from mtvision.convert.tflite_mobilenet_graph import (
    ClassifierTail,
    ConvLayer,
    DecoderLayers,
    DeepLabTail,
    MobileNetV2Graph,
    read_mobilenet_v2_graph,
)
from mtvision.data.normalization import INCEPTION_MEAN_RGB, INCEPTION_STD_RGB
from mtvision.errors import ConversionError
from mtvision.layers.same_padding import SamePad2d, needs_dynamic_padding
from mtvision.tasks import CLASSIFICATION, SEGMENTATION, Task, heads_of_task
from mtvision.utils.atomic_files import atomic_write_bytes

__all__ = ["convert_tflite", "infer_model", "read_label_file", "save_checkpoint"]

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
_DEEPLABV3PLUS_NAME = "deeplabv3plus_mobilenet_v2"
# (x - 127.5) / 127.5 against the file's (q - zero_point) * scale: one grey level and 1%.
_MEAN_TOLERANCE = 1.0
_STD_TOLERANCE = 0.01


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
    tail = parsed.tail
    kwargs.update(
        num_classes=num_classes or tail.logits.out_channels,
        width_mult=width,
        output_stride=parsed.output_stride,
        head="ondevice",
        channels=tail.branch.out_channels,
        align_corners=tail.align_corners,
    )
    if tail.decoder is None:
        return _DEEPLAB_NAME, kwargs
    decoder = tail.decoder
    low_level_tap = block_tap(parsed, decoder.low_level_block)
    if low_level_tap != "layer4_depthwise" or len(decoder.separable) != 2:
        raise ConversionError(
            f"{parsed.graph.path}: a DeepLabv3+ decoder on {low_level_tap!r} with "
            f"{len(decoder.separable)} separable convs; {_DEEPLABV3PLUS_NAME} reads "
            "'layer4_depthwise' through 2 (convert into a config's model instead)"
        )
    if decoder.resize != tail.resize or tail.resize == "half_pixel":
        raise ConversionError(
            f"{parsed.graph.path}: the decoder upsamples by the rule {decoder.resize!r}, the "
            f"logits by {tail.resize!r}; {_DEEPLABV3PLUS_NAME} resizes both by one rule, "
            "'align_corners' or 'asymmetric'"
        )
    kwargs.update(
        low_level_channels=decoder.low_level.out_channels,
        decoder_channels=decoder.separable[0][1].out_channels,
        tf_legacy_resize=tail.resize == "asymmetric",
    )
    return _DEEPLABV3PLUS_NAME, kwargs


def block_tap(parsed: MobileNetV2Graph, block_index: int) -> str:
    """The backbone tap (``INNER_TAPS``) that is the depthwise output of the graph's
    block ``block_index`` (0-based over all blocks), or a ConversionError."""
    from mtvision.backbones.mobilenetv2 import INNER_TAPS, INVERTED_RESIDUAL_SETTING

    first = 0
    for stage, (_, _, repeats, _) in enumerate(INVERTED_RESIDUAL_SETTING, start=1):
        if block_index < first + repeats:
            where = (f"stage{stage}", block_index - first, "depthwise")
            break
        first += repeats
    else:
        where = None
    for name, tap in INNER_TAPS.items():
        if tap == where:
            return name
    raise ConversionError(
        f"{parsed.graph.path}: the decoder reads the depthwise output of block {block_index} "
        f"({where}), which is no tap of MobileNetV2; taps inside blocks: {INNER_TAPS}"
    )


class _Loader:
    """Collects the converted state dict, checking each graph layer against its module."""

    def __init__(self, parsed: MobileNetV2Graph, model: nn.Module) -> None:
        self.parsed = parsed
        self.model = model
        self.module_names = {module: name for name, module in model.named_modules()}
        self.model_state = model.state_dict()
        self.state: dict[str, torch.Tensor] = {}
        #: module name -> the graph layer loaded into it (the int8 emulation's record).
        self.layers: dict[str, ConvLayer] = {}

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
        target = self.model_state[key]
        value = torch.as_tensor(value, dtype=target.dtype)
        if value.shape != target.shape:
            self.fail(None, module, f"{name} {tuple(value.shape)} vs model {tuple(target.shape)}")
        self.state[key] = value

    def conv_norm_act(
        self,
        module: nn.Module,
        layer: ConvLayer,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
    ) -> None:
        """Load a conv + folded BN into a ConvNormAct (BN as identity carrying the bias)."""
        conv, bn, act = module.conv, module.bn, module.act
        self.check_conv(module, conv, layer)
        self.layers[self.module_names[module]] = layer
        if type(act) is not _ACTIVATION_MODULES[layer.activation]:
            self.fail(
                layer, module, f"activation {type(act).__name__}, the graph has {layer.activation}"
            )
        if conv.bias is not None:
            self.fail(layer, module, "a ConvNormAct conv with a bias")
        self.put(conv, "weight", layer.weight if weight is None else weight)
        self.put(bn, "weight", np.ones(layer.out_channels))
        self.put(bn, "bias", layer.bias if bias is None else bias)
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

    def head(self, layer: ConvLayer, task: Task, head_type: str) -> nn.Module:
        """The model's one head, a ``head_type`` of ``task``, as a converted file has one
        head (found by its task; its name is free)."""
        heads = getattr(self.model, "heads", {})
        names = heads_of_task(
            {key: getattr(head, "task", None) for key, head in heads.items()}, task
        )
        if len(heads) != 1 or not names or type(heads[names[0]]).__name__ != head_type:
            found = {key: type(head).__name__ for key, head in heads.items()}
            self.fail(
                layer, None, f"the model must have one {head_type} ({task.name}), it has {found}"
            )
        return heads[names[0]]

    def classifier(self, model: nn.Module, tail: ClassifierTail) -> nn.Module:
        """Load the classifier tail; returns the head it went into."""
        head = self.head(tail.logits, CLASSIFICATION, "ClassifierHead")
        if getattr(model.backbone, "final_conv", None) is None:
            self.fail(tail.final_conv, model.backbone, "the backbone has no final_conv")
        self.conv_norm_act(model.backbone.final_conv, tail.final_conv)
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
        return head

    def deeplab(self, model: nn.Module, tail: DeepLabTail) -> nn.Module:
        """Load the DeepLabv3 or DeepLabv3+ tail; returns the head it went into."""
        head_type = "DeepLabV3Head" if tail.decoder is None else "DeepLabV3PlusHead"
        head = self.head(tail.logits, SEGMENTATION, head_type)
        aspp = head.aspp
        encoder_spec = head.in_spec if tail.decoder is None else head.encoder_spec
        if encoder_spec.name != "stage7":
            self.fail(tail.branch, head, f"the head reads {encoder_spec.name!r}, not 'stage7'")
        if aspp.atrous_rates:
            self.fail(
                tail.branch,
                aspp,
                f"atrous rates {aspp.atrous_rates}; the graph has none (head='ondevice')",
            )
        if _head_resize(head) != tail.resize:
            self.fail(
                tail.logits,
                head,
                f"align_corners={head.align_corners}, tf_legacy_resize="
                f"{getattr(head, 'tf_legacy_resize', False)}; the graph upsamples the logits with "
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
        if tail.decoder is not None:
            self.decoder(head, tail.decoder, tail)
        classifier = head.classifier
        self.check_conv(head, classifier, tail.logits)
        if tail.logits.weight.shape[0] != head.num_classes:
            self.fail(
                tail.logits,
                head,
                f"{head.num_classes} classes vs graph {tail.logits.weight.shape[0]}",
            )
        self.layers[self.module_names[classifier]] = tail.logits
        self.put(classifier, "weight", tail.logits.weight)
        self.put(classifier, "bias", tail.logits.bias)
        return head

    def decoder(self, head: nn.Module, decoder: DecoderLayers, tail: DeepLabTail) -> None:
        """Load the DeepLabv3+ decoder: the low-level projection and the separable convs."""
        tap = block_tap(self.parsed, decoder.low_level_block)
        if head.low_level_spec.name != tap:
            self.fail(
                decoder.low_level,
                head,
                f"the head's low-level tap is {head.low_level_spec.name!r}; the graph's "
                f"decoder reads {tap!r}",
            )
        if decoder.resize != tail.resize:
            self.fail(
                decoder.low_level,
                head,
                f"the graph upsamples the encoder by {decoder.resize!r} and the logits by "
                f"{tail.resize!r}; the head resizes both by one rule",
            )
        self.conv_norm_act(head.low_level, decoder.low_level)
        if len(head.decoder) != len(decoder.separable):
            self.fail(
                decoder.low_level,
                head,
                f"{len(head.decoder)} separable convs, the graph has {len(decoder.separable)}",
            )
        # The head concatenates [encoder, low level]; a graph in the other order gets its
        # first separable conv's channels reordered to match (exact: the depthwise conv
        # is per channel, the pointwise conv sums over them).
        widths = {
            "encoder": tail.projection.out_channels,
            "low_level": decoder.low_level.out_channels,
        }
        starts, start = {}, 0
        for name in decoder.concat_order:
            starts[name] = start
            start += widths[name]
        order = np.concatenate(
            [
                np.arange(starts[name], starts[name] + widths[name])
                for name in ("encoder", "low_level")
            ]
        )
        for index, (module, (depthwise, pointwise)) in enumerate(
            zip(head.decoder, decoder.separable, strict=True)
        ):
            if index == 0:
                self.conv_norm_act(
                    module.depthwise,
                    depthwise,
                    weight=depthwise.weight[order],
                    bias=depthwise.bias[order],
                )
                self.conv_norm_act(module.pointwise, pointwise, weight=pointwise.weight[:, order])
            else:
                self.conv_norm_act(module.depthwise, depthwise)
                self.conv_norm_act(module.pointwise, pointwise)

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


def _head_resize(head: nn.Module) -> str:
    """A segmentation head's in-graph resize rule, named as
    :func:`~mtvision.convert.tflite_mobilenet_graph.resize_rule` names the graph's."""
    if getattr(head, "tf_legacy_resize", False):
        return "asymmetric"
    return "align_corners" if head.align_corners else "half_pixel"


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
            class i). DeepLab defaults to the PASCAL VOC names, DeepLabv3+ with 32
            outputs to MLPerf's ADE20K-Top31 (background + ADE20K's first 31 classes).

    Returns:
        ``(model, meta)``: the model in eval mode with the converted weights, and the
        checkpoint's ``meta`` (see :func:`save_checkpoint`).

    Raises:
        ConversionError: the file is not such a graph, or does not fit ``model``.
    """
    from mtvision.models.named_models import create_model

    graph = TfliteGraph(path)
    parsed = read_mobilenet_v2_graph(graph)
    name, kwargs = infer_model(parsed, num_classes)
    if model is None:
        model = create_model(name, **kwargs)
    loader = _Loader(parsed, model)
    loader.preprocessing()
    loader.backbone(model.backbone)
    if isinstance(parsed.tail, ClassifierTail):
        outputs = loader.classifier(model, parsed.tail).num_classes
    else:
        outputs = loader.deeplab(model, parsed.tail).num_classes
    state = model.state_dict()
    not_converted = [key for key in state if key not in loader.state]
    if not_converted:
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
        "batch_norm": {
            "folded": True,
            "eps": _batch_norm_eps(model, loader.state),
            "note": (
                "folded into the convs by TFLite; each BatchNorm holds weight 1, bias = folded "
                "bias, running_mean 0, running_var 1 - eps: exact in eval mode only, fine-tune "
                "with norm_eval=True (frozen BN) or re-estimate the statistics first"
            ),
        },
        "not_converted": not_converted,
    }
    if isinstance(parsed.tail, DeepLabTail):
        meta[INT8_META_KEY] = int8_record(parsed, loader.layers, model)
    return model, meta


def _batch_norm_eps(model: nn.Module, converted: dict[str, torch.Tensor]) -> float:
    """The one eps of the converted BatchNorms (their running_var is 1 - eps), which a
    model with another eps needs to load them exactly
    (:mod:`mtvision.backbones.weights`)."""
    eps = {
        module.eps
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and f"{name}.running_var" in converted
    }
    if len(eps) != 1:
        raise ConversionError(f"the converted BatchNorms have eps {sorted(eps)}; expected one")
    return eps.pop()


def _check_unconverted_modules_unused(
    parsed: MobileNetV2Graph, model: nn.Module, not_converted: list[str]
) -> None:
    """Raise unless every tensor the file lacks belongs to a module the forward never runs
    (e.g. a backbone built with taps past the ones the converted head reads)."""
    owners = {key.rsplit(".", 1)[0] for key in not_converted}  # e.g. backbone.final_conv.bn
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
    if isinstance(parsed.tail, DeepLabTail) and parsed.tail.decoder is not None and outputs == 32:
        # MLPerf Mobile's ADE20K-Top31: background, then ADE20K's 31 most frequent classes.
        from mtvision.data.ade20k import ADE20K_CLASSES

        return ["background", *ADE20K_CLASSES[:31]]
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
