"""MobileNetV2 (Sandler et al., arXiv:1801.04381) as a backbone with named feature taps.

The architecture is the paper's Table 2, kept below as a literal ``[t, c, n, s]``
table and read by one loop. Channel rounding follows torchvision, so torchvision's
``mobilenet_v2`` weights load (:mod:`mtvision.backbones.weights`, which knows the
weight formats; this module knows only the architecture and its taps). The
classifier on top (pooling, dropout, linear) is a head:
:class:`~mtvision.heads.ClassifierHead`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mmengine.model import BaseModule
from torch import Tensor, nn

from mtvision.backbones.inverted_residual import InvertedResidual
from mtvision.layers.conv_norm_act import ConvNormAct
from mtvision.layers.feature_spec import FeatureInfo, FeatureSpec
from mtvision.registry import MODELS

# Table 2: expansion factor t, output channels c, repeats n, stride s of the first repeat.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
FINAL_CHANNELS = 1280

#: Taps inside a block, as data: name -> (stage, block index, part of the block, see
#: ``inverted_residual.PARTS``). Layers are counted as TF-slim's ``layer_N`` (torchvision
#: ``features[N - 1]``). Each tap's stride is the block input's for ``"expansion"``, its
#: output's for ``"depthwise"``; its channels the block's expansion width.
INNER_TAPS: dict[str, tuple[str, int, str]] = {
    # Second block of the 24-channel stage, after its depthwise conv: 144 channels at
    # stride 4, TF-DeepLab's decoder end point "layer_4/depthwise_output" (DeepLabv3+).
    "layer4_depthwise": ("stage2", 1, "depthwise"),
    # First block of the 160-channel stage, after its expansion: 576 channels at
    # stride 16 (32 without dilation), SSDLite's first prediction layer.
    "layer15_expansion": ("stage6", 0, "expansion"),
}
EXPANSION_TAP = "layer15_expansion"

VALID_OUTPUT_STRIDES = (8, 16, 32)
# Top-level modules in depth order; taps named like a module are that module's output.
MODULE_ORDER = ("stem", *(f"stage{i}" for i in range(1, 8)), "final_conv")


def _make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never more than 10% down.

    Same rule as TF-slim and torchvision, so thinned models keep their channel counts.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@MODELS.register_module()
class MobileNetV2(BaseModule):
    """MobileNetV2 returning a dict of named feature maps.

    Modules: ``stem`` (3x3 s2 ConvNormAct), ``stage1`` .. ``stage7`` (``nn.Sequential``
    of :class:`InvertedResidual`, one per row of Table 2) and ``final_conv`` (1x1
    ConvNormAct). The paper's last row (average pool, 1x1 conv to k classes) is a
    head: :class:`~mtvision.heads.ClassifierHead` (``mtvision.create_model("mobilenet_v2")``).

    The model keeps no module past the deepest tap of ``out_features`` (as timm's
    ``features_only`` does): built with ``out_features=("stage7",)`` it has no
    ``final_conv``; cut at ``layer15_expansion`` it keeps only the expand layer of
    ``stage6``'s first block. Taps inside blocks are data (:data:`INNER_TAPS`). ``dropped_modules`` names what was cut, so
    the weight loaders (:mod:`mtvision.backbones.weights`) know which keys are absent
    on purpose (:meth:`is_dropped`). The whole network is built and initialised before the cut, so a seeded model gets
    the same weights whichever taps it keeps.

    ``feature_info`` (a :class:`~mtvision.layers.FeatureInfo`) lists every tap of the
    kept modules in depth order as :class:`FeatureSpec` (name, channels, stride),
    names unique and strides never decreasing; a tap of an (N, 3, H, W) input has
    shape (N, channels, ceil(H / stride), ceil(W / stride)).

    Args:
        width_mult: channel multiplier; channels are rounded to ``round_nearest``. The
            final 1x1 conv is never thinned below 1280.
        output_stride: 8, 16 or 32. Below 32 the later strides become dilations
            (DeepLab's atrous scheme), so the deepest maps keep 1/output_stride.
        out_features: tap names returned by ``forward``; default ``("final_conv",)``.
            The deepest one decides which modules are kept.
        frozen_stages: -1 freezes nothing, 0 the stem, k >= 1 the stem and stage1..k
            (no gradients, kept in eval mode by ``train()``).
        norm_eval: keep every BatchNorm in eval mode during training.
        round_nearest: channel rounding divisor (TF-DeepLab's thinned MobileNetV2s
            use 1: width 0.5 has 12 channels where 8 would give 16).
        padding: ``"symmetric"`` (PyTorch, the default) or ``"same"`` (TensorFlow's
            rule: the stride-2 convs pad 0 before and 1 after on even inputs), for
            weights converted from TF; see :class:`~mtvision.layers.ConvNormAct`.
        init_cfg: mmengine initialisation config, e.g. ``dict(type="Pretrained",
            checkpoint=PATH, prefix="backbone.")`` to start from another model's
            backbone (applied by ``init_weights()``, which the Runner calls).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        output_stride: int = 32,
        out_features: Sequence[str] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        round_nearest: int = 8,
        padding: str = "symmetric",
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if output_stride not in VALID_OUTPUT_STRIDES:
            raise ValueError(
                f"output_stride must be one of {VALID_OUTPUT_STRIDES}, got {output_stride}"
            )
        num_stages = len(INVERTED_RESIDUAL_SETTING)
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"frozen_stages must be in [-1, {num_stages}], got {frozen_stages}")
        self.width_mult = width_mult
        self.output_stride = output_stride
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.padding = padding

        in_channels = _make_divisible(STEM_CHANNELS * width_mult, round_nearest)
        self.stem = ConvNormAct(3, in_channels, kernel_size=3, stride=2, padding=padding)
        current_stride = 2
        feature_info = [FeatureSpec("stem", in_channels, current_stride)]

        # TF DeepLab's rule: once the running stride reaches output_stride, each further
        # stride becomes stride 1 with the current rate, and multiplies the rate of the
        # blocks after it.
        rate = 1
        for stage_index, (t, c, n, s) in enumerate(INVERTED_RESIDUAL_SETTING, start=1):
            stage_name = f"stage{stage_index}"
            out_channels = _make_divisible(c * width_mult, round_nearest)
            blocks = []
            for block_index in range(n):
                stride = s if block_index == 0 else 1
                input_stride = current_stride
                if current_stride == output_stride:
                    block_stride, dilation = 1, rate
                    rate *= stride
                else:
                    block_stride, dilation = stride, 1
                    current_stride *= stride
                block = InvertedResidual(
                    in_channels, out_channels, block_stride, t, dilation, padding=padding
                )
                for tap, (tap_stage, tap_block, part) in INNER_TAPS.items():
                    if (tap_stage, tap_block) == (stage_name, block_index):
                        # The expansion precedes the depthwise conv, so it has the input's stride.
                        tap_stride = input_stride if part == "expansion" else current_stride
                        feature_info.append(FeatureSpec(tap, block.expansion_channels, tap_stride))
                blocks.append(block)
                in_channels = out_channels
            self.add_module(stage_name, nn.Sequential(*blocks))
            feature_info.append(FeatureSpec(stage_name, out_channels, current_stride))

        self.last_channels = _make_divisible(FINAL_CHANNELS * max(1.0, width_mult), round_nearest)
        self.final_conv = ConvNormAct(in_channels, self.last_channels, kernel_size=1)
        feature_info.append(FeatureSpec("final_conv", self.last_channels, current_stride))

        feature_info = FeatureInfo(feature_info)  # checks names unique, strides non-decreasing

        self._init_weights()
        for module in self._frozen_modules():
            for parameter in module.parameters():
                parameter.requires_grad_(False)

        if out_features is None:
            out_features = ("final_conv",)
        out_features = _checked_names(out_features, feature_info)
        self.feature_info, self.dropped_modules = self._drop_past(
            _deepest(out_features, feature_info), feature_info
        )
        self.set_out_features(out_features)
        self.train()

    def _drop_past(
        self, deepest: str, feature_info: FeatureInfo
    ) -> tuple[FeatureInfo, tuple[str, ...]]:
        """Delete every module after tap ``deepest``; return the kept taps and dropped paths."""
        dropped: list[str] = []
        last_module = _module_of(deepest)
        for name in MODULE_ORDER[MODULE_ORDER.index(last_module) + 1 :]:
            if getattr(self, name, None) is None:
                continue
            dropped.append(name)
            delattr(self, name)
        if deepest in INNER_TAPS:
            stage_name, block_index, part = INNER_TAPS[deepest]
            stage = getattr(self, stage_name)
            dropped += [f"{stage_name}.{i}" for i in range(block_index + 1, len(stage))]
            del stage[block_index + 1 :]
            dropped += [
                f"{stage_name}.{block_index}.{name}" for name in stage[block_index].cut_after(part)
            ]
        return feature_info[: feature_info.names.index(deepest) + 1], tuple(dropped)

    # ------------------------------------------------------------------ taps

    @property
    def out_features(self) -> tuple[str, ...]:
        """Names of the maps ``forward`` returns, in this order."""
        return self._out_features

    def set_out_features(self, names: Sequence[str]) -> None:
        """Choose which of the kept taps ``forward`` returns.

        Raises ``ValueError`` for unknown names and for taps past the modules this
        backbone kept (build it with the deepest tap you need instead).
        """
        names = _checked_names(names, self.feature_info)
        self._out_features = names
        deepest = _deepest(names, self.feature_info)
        self._modules_to_run = MODULE_ORDER[: MODULE_ORDER.index(_module_of(deepest)) + 1]
        # stage -> {block index: [(tap, part), ...]} of the wanted inner taps.
        self._inner_taps: dict[str, dict[int, list[tuple[str, str]]]] = {}
        for name in names:
            if name in INNER_TAPS:
                stage_name, block_index, part = INNER_TAPS[name]
                stage_taps = self._inner_taps.setdefault(stage_name, {})
                stage_taps.setdefault(block_index, []).append((name, part))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) -> {name: (N, C, ceil(H / stride), ceil(W / stride))}, keys in
        ``out_features`` order.

        Layers after the deepest requested tap are not run.
        """
        wanted = self._out_features
        taps: dict[str, Tensor] = {}
        for name in self._modules_to_run:
            module = getattr(self, name)
            inner = self._inner_taps.get(name)
            if inner is None:
                x = module(x)
            else:
                for block_index, block in enumerate(module):
                    if block_index not in inner:
                        x = block(x)
                        continue
                    parts = block.forward_parts(x)
                    for tap, part in inner[block_index]:
                        taps[tap] = parts[part]
                    if "out" not in parts:  # the block was cut at this tap: the deepest
                        return {tap: taps[tap] for tap in wanted}
                    x = parts["out"]
            if name in wanted:
                taps[name] = x
        return {name: taps[name] for name in wanted}

    # ------------------------------------------------------------- training

    def _init_weights(self) -> None:
        # Private name on purpose: mmengine calls a child's public ``init_weights()``
        # and would wipe weights loaded before the runner starts.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _frozen_modules(self) -> Iterator[nn.Module]:
        names = ["stem", *(f"stage{i}" for i in range(1, self.frozen_stages + 1))]
        for name in names[: self.frozen_stages + 1]:
            module = getattr(self, name, None)
            if module is not None:  # frozen stages past the kept modules are gone
                yield module

    def train(self, mode: bool = True) -> MobileNetV2:
        """Like ``nn.Module.train``, but frozen stages (and, with ``norm_eval``, every
        BatchNorm) stay in eval mode so their running statistics do not move."""
        super().train(mode)
        if mode:
            for module in self._frozen_modules():
                module.eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def is_dropped(self, module_path: str) -> bool:
        """Whether ``module_path`` (e.g. ``"final_conv.bn"``) lies in a module this model
        dropped past its deepest tap (``dropped_modules``): weights for it are absent
        on purpose."""
        return any(
            module_path == dropped or module_path.startswith(dropped + ".")
            for dropped in self.dropped_modules
        )


def _checked_names(names: Sequence[str], feature_info: FeatureInfo) -> tuple[str, ...]:
    """``names`` as a tuple, or ``ValueError`` naming the problem and the available taps
    (:class:`~mtvision.errors.ConfigError`, a ``ValueError``, for unknown names)."""
    names = tuple(names)
    available = list(feature_info.names)
    if not names:
        raise ValueError(f"out_features must name at least one of {available}")
    feature_info.check_known(
        names,
        "out_features",
        " (a backbone keeps no module past the deepest tap it was built with; build it with "
        "the taps you need)",
    )
    if len(set(names)) != len(names):
        raise ValueError(f"out_features has duplicates: {list(names)}")
    return names


def _module_of(tap: str) -> str:
    """The top-level module (``MODULE_ORDER``) whose run produces ``tap``."""
    return INNER_TAPS[tap][0] if tap in INNER_TAPS else tap


def _deepest(names: tuple[str, ...], feature_info: FeatureInfo) -> str:
    return max(names, key=feature_info.names.index)
