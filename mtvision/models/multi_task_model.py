"""The composing model: one backbone, run once per batch, feeding a named set of task heads."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel, ModuleDict
from torch import Tensor, nn

from mtvision.backbones.weights import load_torchvision_weights
from mtvision.errors import ConfigError
from mtvision.models.data_preprocessor import build_data_preprocessor
from mtvision.ops.resize import resize
from mtvision.registry import MODELS
from mtvision.tasks import Task, task_of
from mtvision.utils.state_dict import unwrap_state_dict

PLAIN_VIEW = (1.0, False)


@MODELS.register_module()
class MultiTaskModel(BaseModel):
    """A backbone and named heads behind mmengine's model contract; a single-task model is
    this model with one head.

    Each head declares the backbone taps it reads (``in_features``, in its config or
    as its class default); the backbone is built to return exactly the union of
    them (and so keeps no module past the deepest), and each head is built from the
    backbone's ``feature_info`` (channels and strides come from the specs, never
    from a config). ``forward(inputs, data_samples, mode)``, with ``inputs`` a
    normalised (N, 3, H, W) batch padded bottom/right by the data preprocessor:

    - ``mode="tensor"``: ``{head name: that head's raw outputs}`` of the active heads
      (:meth:`active_heads`), one backbone pass.
    - ``mode="loss"``: every head's losses from one backbone pass, multiplied by
      ``loss_weights[name]`` and keyed ``"<head>.<loss key>"`` (e.g.
      ``"detection.loss_cls"``; mmengine's ``parse_losses`` sums the keys that
      contain ``"loss"``). A head takes loss only from the samples that carry its
      annotation (``label``; ``boxes`` + ``labels``; ``mask``); with none in the
      batch its loss is an exact 0 that still reaches all its parameters.
    - ``mode="predict"``: one dict per image with the fields of every active head
      (``pred_score``/``pred_label``/``gt_label``; ``boxes``/``scores``/``labels``;
      ``pred_mask``/``gt_mask``) and the sample's ``meta``. Images are grouped by
      ``meta["img_shape"]`` and each group is cut out of the padded batch before
      the backbone runs (padding would leak into image pooling and borders), so a
      batch of one shape is one pass. A head with test-time views
      (``test_time_views``, e.g. DeepLab's multi-scale + flip test) gets the
      backbone run on each resized / mirrored view as well.

    Args:
        backbone: config dict (``type`` in ``mtvision.registry.MODELS``; its
            ``out_features`` are set from the heads) or a built backbone with
            ``feature_info`` and ``set_out_features``.
        heads: head name -> config dict (or built head); any subset of tasks, built
            in this order. The named models use ``classification``, ``detection``
            and ``segmentation``.
        loss_weights: head name -> weight of its losses (default 1 each).
        bn_eps, bn_momentum: when set, applied to every BatchNorm of the model,
            backbone included (SSDLite's recipe: 1e-3 and 0.03, TF's decay 0.97).
        data_preprocessor: batch preprocessor config; default ``DataPreprocessor``.
        channels_last: keep weights in channels-last memory format (pair it with
            the preprocessor's ``channels_last``).
        init_cfg: mmengine initialisation config, e.g. ``dict(type="Pretrained",
            checkpoint=PATH)`` to start from every matching key of another model's
            checkpoint (a single-task checkpoint fills the backbone and its head).
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        heads: Mapping[str, dict | nn.Module],
        loss_weights: Mapping[str, float] | None = None,
        bn_eps: float | None = None,
        bn_momentum: float | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        channels_last: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            data_preprocessor=build_data_preprocessor(data_preprocessor), init_cfg=init_cfg
        )
        if not heads:
            raise ValueError("a MultiTaskModel needs at least one head")
        bad_names = [name for name in heads if not name.isidentifier()]
        if bad_names:
            raise ValueError(f"head names must be Python identifiers, got {bad_names}")
        unknown = sorted(set(loss_weights or {}) - set(heads))
        if unknown:
            raise ValueError(f"loss_weights names unknown heads {unknown}; heads: {list(heads)}")
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}

        taps: list[str] = []
        for name, head in heads.items():
            taps += [tap for tap in _in_features(name, head) if tap not in taps]
        if isinstance(backbone, dict):
            if "out_features" in backbone:
                raise ValueError(
                    "the backbone's out_features follow the heads' in_features "
                    f"({taps}); remove out_features from the backbone config"
                )
            try:
                backbone = MODELS.build({**backbone, "out_features": tuple(taps)})
            except ConfigError as error:  # a tap no head can have: name the heads' taps
                raise ConfigError(f"heads' in_features {_head_taps(heads)}: {error}") from error
        else:
            try:
                backbone.set_out_features(tuple(taps))
            except ConfigError as error:
                raise ConfigError(f"heads' in_features {_head_taps(heads)}: {error}") from error
        self.backbone = backbone
        self.heads = ModuleDict()
        for name, head in heads.items():
            if isinstance(head, dict):
                head = MODELS.build(head, default_args=dict(feature_info=backbone.feature_info))
            self.heads[name] = head
        self._active: tuple[str, ...] = tuple(self.heads)

        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if bn_eps is not None:
                    module.eps = bn_eps
                if bn_momentum is not None:
                    module.momentum = bn_momentum
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------ active heads

    @property
    def active_head_names(self) -> tuple[str, ...]:
        """Heads that run in ``tensor`` and ``predict`` mode (all heads unless restricted)."""
        return self._active

    @property
    def head_tasks(self) -> dict[str, Task]:
        """``{head name: the task adapter it declares}`` of every head (:mod:`mtvision.tasks`).

        Raises:
            ValueError: a head declares no task adapter.
        """
        return {name: task_of(head, name) for name, head in self.heads.items()}

    def active_heads(self, names: Iterable[str] | None) -> _ActiveHeads:
        """Restrict ``tensor`` and ``predict`` mode to the heads ``names`` (``None``: all).

        Takes effect at once; used as a context manager it restores the previous
        selection on exit::

            with model.active_heads([name]):
                predictions = model.test_step(batch_of_that_heads_data)

        ``loss`` mode always uses every head (each parameter must take part for DDP).

        Raises:
            KeyError: a name that is not a head of this model.
            ValueError: an empty selection.
        """
        names = tuple(self.heads) if names is None else tuple(names)
        unknown = [name for name in names if name not in self.heads]
        if unknown:
            raise KeyError(f"no head named {unknown}; the model has {list(self.heads)}")
        if not names:
            raise ValueError(f"active_heads needs at least one of {list(self.heads)}")
        return _ActiveHeads(self, names)

    # ----------------------------------------------------------------- forward

    def forward(
        self, inputs: Tensor, data_samples: Sequence[dict] | None = None, mode: str = "tensor"
    ):
        if mode == "tensor":
            features = self.backbone(inputs)
            return {name: self.heads[name](features) for name in self._active}
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    def loss(self, inputs: Tensor, data_samples: Sequence[dict] | None) -> dict[str, Tensor]:
        """Weighted losses of every head, keyed ``"<head>.<loss key>"``."""
        features = self.backbone(inputs)
        input_size = tuple(inputs.shape[-2:])
        losses = {}
        for name, head in self.heads.items():
            head_losses = head.loss(head(features), data_samples, input_size=input_size)
            for key, value in head_losses.items():
                losses[f"{name}.{key}"] = value * self.loss_weights[name]
        return losses

    def predict(self, inputs: Tensor, data_samples: Sequence[dict] | None = None) -> list[dict]:
        """One dict per image: every active head's fields plus the sample's ``meta``."""
        n, _, height, width = inputs.shape
        samples = list(data_samples) if data_samples is not None else [{} for _ in range(n)]
        if len(samples) != n:
            raise ValueError(f"got {len(samples)} data samples for {n} images")
        predictions: list[dict] = [{} for _ in range(n)]
        for (h, w), indices in _group_by_img_shape(samples, (height, width)).items():
            images = inputs if len(indices) == n else inputs[indices]
            if (h, w) != (height, width):
                images = images[:, :, :h, :w]
            group_samples = [samples[i] for i in indices]
            features: dict[tuple, dict[str, Tensor]] = {PLAIN_VIEW: self.backbone(images)}
            for name in self._active:
                head = self.heads[name]
                views = getattr(head, "test_time_views", (PLAIN_VIEW,))
                if tuple(views) == (PLAIN_VIEW,):
                    outputs = head(features[PLAIN_VIEW])
                    head_predictions = head.predict(outputs, group_samples, input_size=(h, w))
                else:
                    # The head's resize rule scales the images too (TF-DeepLab: align_corners).
                    align_corners = bool(getattr(head, "align_corners", False))
                    view_outputs = []
                    for view in views:
                        # At scale 1 the resize is the identity under either rule.
                        key = view if view[0] == 1.0 else (*view, align_corners)
                        if key not in features:
                            features[key] = self.backbone(_view(images, *view, align_corners))
                        view_size = _view_size((h, w), view[0])
                        view_outputs.append((head(features[key]), view_size))
                    head_predictions = head.predict_views(view_outputs, group_samples, (h, w))
                for index, head_prediction in zip(indices, head_predictions, strict=True):
                    _merge(predictions[index], head_prediction, name)
        for prediction, sample in zip(predictions, samples, strict=True):
            if "meta" in sample:
                prediction["meta"] = sample["meta"]
        return predictions

    # ------------------------------------------------------------ weights

    def init_weights(self) -> None:
        """mmengine's initialisation (the ``init_cfg`` of the model and of its parts, e.g.
        ``backbone.init_cfg=dict(type="Pretrained", checkpoint=PATH)``), then a check
        that the data preprocessor normalises as the pretrained weights expect: a file
        that states its preprocessing (a converted TFLite checkpoint: RGB, mean/std
        127.5) and a preprocessor with other mean/std give a logged warning."""
        super().init_weights()
        for part in (self, self.backbone):
            expected = getattr(part, "pretrained_preprocessing", None)
            if expected:
                problem = _preprocessing_mismatch(self.data_preprocessor, expected)
                if problem:
                    print_log(
                        f"the pretrained weights of {type(part).__name__} expect {problem}: set "
                        "model.data_preprocessor's mean/std to match (configs/finetune/ do)",
                        logger="current",
                        level=logging.WARNING,
                    )

    def load_torchvision_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a torchvision ``mobilenet_v2`` state dict (same width).

        ``features.*`` go into the backbone (the keys of modules it dropped past its
        deepest tap are absent on purpose, every other key must fit);
        ``classifier.1.*`` into every head that takes torchvision classifier weights
        (:class:`~mtvision.heads.ClassifierHead`), and are skipped when there is none.
        Accepts what every weight loader does (:mod:`mtvision.utils.state_dict`).

        Raises :class:`~mtvision.errors.CheckpointError` (a ``ValueError``) listing
        missing, unexpected or mis-shaped keys.
        """
        state_dict = unwrap_state_dict(state_dict, "torchvision mobilenet_v2 weights")
        takers = [h for h in self.heads.values() if hasattr(h, "load_torchvision_state_dict")]
        for head in takers:
            head.load_torchvision_state_dict(state_dict)
        load_torchvision_weights(
            self.backbone, {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        )


class _ActiveHeads:
    """The selection made by :meth:`MultiTaskModel.active_heads`; restores the previous one
    when used as a context manager."""

    def __init__(self, model: MultiTaskModel, names: tuple[str, ...]) -> None:
        self.model = model
        self.previous = model._active
        model._active = names

    def __enter__(self) -> MultiTaskModel:
        return self.model

    def __exit__(self, *exc_info) -> None:
        self.model._active = self.previous


def _head_taps(heads: Mapping) -> dict[str, tuple[str, ...]]:
    """Head name -> the taps it reads, for error messages."""
    return {name: _in_features(name, head) for name, head in heads.items()}


def _in_features(name: str, head: dict | nn.Module) -> tuple[str, ...]:
    """The taps a head reads: ``in_features`` of its config, else its class default."""
    if isinstance(head, nn.Module):
        return tuple(head.in_features)
    if "type" not in head:
        raise ValueError(f"head {name!r} has no 'type': {dict(head)}")
    if head.get("in_features"):
        return tuple(head["in_features"])
    head_type = head["type"]
    head_class = MODELS.get(head_type) if isinstance(head_type, str) else head_type
    if head_class is None:
        raise KeyError(f"head {name!r}: {head_type!r} is not in mtvision's MODELS registry")
    return tuple(head_class.in_features)


def _group_by_img_shape(
    samples: Sequence[dict], input_size: tuple[int, int]
) -> dict[tuple[int, int], list[int]]:
    """Indices of the images of each ``meta["img_shape"]`` (default: the whole input)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, sample in enumerate(samples):
        meta = sample.get("meta", {})
        img_shape = tuple(int(s) for s in meta.get("img_shape", input_size))
        if img_shape[0] > input_size[0] or img_shape[1] > input_size[1]:
            source = meta.get("img_path", f"sample {index}")
            raise ValueError(
                f"meta['img_shape'] {img_shape} of {source} exceeds the batch's input "
                f"size {tuple(input_size)}"
            )
        groups.setdefault(img_shape, []).append(index)
    return groups


def _view_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(h, w) scaled and rounded half up, at least 1."""
    return max(1, int(size[0] * scale + 0.5)), max(1, int(size[1] * scale + 0.5))


def _view(images: Tensor, scale: float, flip: bool, align_corners: bool = False) -> Tensor:
    """``images`` resized by ``scale`` (bilinear, ``align_corners`` as the head resizes) and,
    with ``flip``, mirrored left-right."""
    scaled = resize(images, _view_size(tuple(images.shape[-2:]), scale), align_corners)
    return scaled.flip(-1) if flip else scaled


def _preprocessing_mismatch(preprocessor: nn.Module, expected: Mapping) -> str | None:
    """What differs between ``expected`` (``{"color_order", "mean", "std"}``, 0-255 units)
    and the normalisation ``preprocessor`` applies, in words; ``None`` when they agree."""
    mean, std = getattr(preprocessor, "mean", None), getattr(preprocessor, "std", None)
    ours = (
        (
            [round(v, 4) for v in mean.flatten().tolist()],
            [round(v, 4) for v in std.flatten().tolist()],
        )
        if isinstance(mean, Tensor) and isinstance(std, Tensor)
        else None
    )
    want = (list(expected.get("mean", ())), list(expected.get("std", ())))
    swaps_channels = bool(getattr(preprocessor, "_channel_conversion", False))
    close = ours is not None and all(
        len(a) == len(b) and torch.allclose(torch.tensor(a), torch.tensor(b, dtype=torch.float))
        for a, b in zip(ours, want, strict=True)
    )
    if close and not swaps_channels:
        return None
    given = "no normalisation" if ours is None else f"mean {ours[0]}, std {ours[1]}"
    order = " with its channels swapped" if swaps_channels else ""
    return (
        f"{expected.get('color_order', 'RGB')} inputs normalised with mean {want[0]}, std "
        f"{want[1]}; the model's data_preprocessor applies {given}{order}"
    )


def _merge(prediction: dict, head_prediction: dict, head_name: str) -> None:
    clash = sorted(set(prediction) & set(head_prediction))
    if clash:
        raise ValueError(
            f"head {head_name!r} predicts {clash}, which another active head predicts too; "
            "run such heads one at a time with model.active_heads([...])"
        )
    prediction.update(head_prediction)
