"""Image classification head: global average pool -> dropout -> linear, cross-entropy, softmax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtvision.heads.base import Head, annotated_samples, sample_source, zero_loss
from mtvision.layers.feature_spec import FeatureSpec
from mtvision.registry import MODELS
from mtvision.tasks import CLASSIFICATION
from mtvision.tasks.classification import classification_to_original
from mtvision.utils.state_dict import check_state_dict_fits, unwrap_state_dict


@MODELS.register_module()
class ClassifierHead(Head):
    """Classify from one backbone tap, as in the paper's Table 2 (avgpool, 1x1 conv to k classes).

    The 1x1 convolution on a 1x1 pooled map is a linear layer; it is named
    ``fc`` so its weights map one to one onto torchvision's ``classifier.1``.

    Args:
        feature_info: the backbone's taps; the head selects ``in_features`` from them
            (the tap's ``channels`` size the linear layer).
        num_classes: number of output classes K.
        dropout: dropout probability before the linear layer (torchvision: 0.2).
        label_smoothing: cross-entropy label smoothing (0 disables it).
        in_features: the one tap read; default ``("final_conv",)``.
        init_cfg: mmengine initialisation config (e.g. ``Pretrained`` with a prefix).

    Contract (see ``docs/architecture.md``):

    - ``forward(features)``: ``{"cls_logits": (N, K)}``.
    - ``loss(outputs, data_samples)``: ``{"loss_cls"}``, cross-entropy averaged over
      the samples that carry a ``label`` (int in 0..K-1); samples without one give
      no loss.
    - ``predict(outputs, data_samples)``: per image ``pred_score`` (K,) softmax
      probabilities, ``pred_label`` (int), and ``gt_label`` when the sample has a label.
    - ``deploy(outputs, input_size, topk=5)``: the deployed graph's outputs (top-k).
    """

    task = CLASSIFICATION
    in_features: tuple[str, ...] = ("final_conv",)

    def __init__(
        self,
        feature_info: Sequence[FeatureSpec],
        num_classes: int,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        in_features: Sequence[str] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        (self.in_spec,) = self.select_taps(feature_info, in_features, count=1)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.in_spec.channels, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map ``features[in_spec.name]`` of shape (N, C, H, W) to ``{"cls_logits": (N, K)}``."""
        x = self.pool(features[self.in_spec.name])
        x = torch.flatten(x, 1)
        return {"cls_logits": self.fc(self.dropout(x))}

    def loss(
        self,
        outputs: dict[str, Tensor],
        data_samples: Sequence[dict] | None,
        input_size: tuple[int, int] | None = None,
    ) -> dict[str, Tensor]:
        """``{"loss_cls": scalar}`` over the samples with a ``label``; ``input_size`` is unused."""
        logits = outputs["cls_logits"]
        indices = annotated_samples(data_samples, ("label",), len(logits), "ClassifierHead")
        if not indices:
            return {"loss_cls": zero_loss(outputs)}
        labels = torch.as_tensor(
            [int(data_samples[i]["label"]) for i in indices], device=logits.device
        )
        bad = torch.nonzero((labels < 0) | (labels >= self.num_classes)).flatten()
        if bad.numel():
            sample = data_samples[indices[int(bad[0])]]
            raise ValueError(
                f"{sample_source(sample)}: label {int(sample['label'])} is outside "
                f"0..{self.num_classes - 1} (num_classes={self.num_classes})"
            )
        if len(indices) < len(logits):
            logits = logits[indices]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return {"loss_cls": loss}

    def postprocess(
        self, outputs: dict[str, Tensor], input_size: tuple[int, int] | None = None
    ) -> dict[str, Tensor]:
        """Tensor post-processing: ``{"pred_score": (N, K) softmax, "pred_label": (N,) argmax}``."""
        scores = outputs["cls_logits"].float().softmax(dim=1)
        return {"pred_score": scores, "pred_label": scores.argmax(dim=1)}

    def deploy(
        self,
        outputs: dict[str, Tensor],
        input_size: tuple[int, int] | None = None,
        topk: int = 5,
        probabilities: bool = False,
    ) -> dict[str, Tensor]:
        """What an exported graph returns: ``{"scores": (N, k) float32 softmax probabilities,
        highest first, "labels": (N, k) int64}`` with ``k = min(topk, K)``; with
        ``probabilities`` every class's ``{"probabilities": (N, K)}`` (what MediaPipe's
        ``ImageClassifier`` reads; the top-k is taken outside the graph)."""
        scores = outputs["cls_logits"].float().softmax(dim=1)
        if probabilities:
            return {"probabilities": scores}
        top_scores, top_labels = scores.topk(min(int(topk), self.num_classes), dim=1)
        return {"scores": top_scores, "labels": top_labels}

    def to_original(self, results: dict[str, Tensor], data_samples: Sequence[dict]) -> list[dict]:
        """:func:`~mtvision.tasks.classification.classification_to_original`."""
        return classification_to_original(results, data_samples)

    def load_torchvision_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load the ``classifier.1.*`` keys of a torchvision ``mobilenet_v2`` state dict into ``fc``.

        Other keys (``features.*``) are the backbone's and ignored here. Accepts and
        refuses what every weight loader does (:mod:`mtvision.utils.state_dict`).

        Raises :class:`~mtvision.errors.CheckpointError` listing missing, unexpected or
        mis-shaped keys.
        """
        state_dict = unwrap_state_dict(state_dict, "torchvision mobilenet_v2 weights")
        torchvision_head = {k: v for k, v in state_dict.items() if k.startswith("classifier.")}
        check_state_dict_fits(
            {f"classifier.1.{k}": v for k, v in self.fc.state_dict().items()},
            torchvision_head,
            source="torchvision mobilenet_v2 weights",
            model_name=f"the classifier head ({self.num_classes} classes)",
        )
        self.fc.load_state_dict(
            {k.removeprefix("classifier.1."): v for k, v in torchvision_head.items()}
        )
