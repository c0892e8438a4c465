"""Image classifier: backbone tap -> classification head -> cross-entropy / top-k scores."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from mtvision.layers.feature_spec import select_specs
from mtvision.models.data_preprocessor import build_data_preprocessor
from mtvision.registry import MODELS
from mtvision.utils.state_dict import check_state_dict_fits, unwrap_state_dict


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Backbone + :class:`~mtvision.heads.ClassifierHead` behind mmengine's model contract.

    The head names the tap it reads (``head["in_feature"]``); the backbone is built
    to return only that tap and the head's input channels come from the
    backbone's ``feature_info``, so no channel count is written in a config.

    Args:
        backbone: config dict (``type`` registered in ``mtvision.registry.MODELS``)
            or a built backbone exposing ``feature_info`` and ``out_features``.
        head: config dict of the head with ``in_feature`` (tap name) and ``num_classes``.
        label_smoothing: cross-entropy label smoothing (0 disables it).
        data_preprocessor: config of the batch preprocessor (normalisation etc.).
        channels_last: keep weights in channels-last memory format (pair it with
            the preprocessor's ``channels_last``).

    ``forward(inputs, data_samples, mode)`` with ``inputs`` a normalised
    (N, 3, H, W) float tensor and ``data_samples`` a list of dicts with ``label``:

    - ``mode="tensor"``: (N, K) logits,
    - ``mode="loss"``: ``{"loss_cls": scalar}``,
    - ``mode="predict"``: one dict per image: ``pred_score`` (K,) softmax
      probabilities, ``pred_label`` (int), plus ``gt_label`` and ``meta``
      copied from the data sample when present.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        head: dict,
        label_smoothing: float = 0.0,
        data_preprocessor: dict | nn.Module | None = None,
        channels_last: bool = False,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(
            data_preprocessor=build_data_preprocessor(data_preprocessor), init_cfg=init_cfg
        )
        head = copy.deepcopy(head)
        in_feature = head.pop("in_feature", "final_conv")
        if isinstance(backbone, dict):
            backbone = MODELS.build({**backbone, "out_features": (in_feature,)})
        (in_spec,) = select_specs(backbone.feature_info, [in_feature])
        self.backbone = backbone
        self.head = MODELS.build(head, default_args=dict(in_spec=in_spec))
        self.num_classes = self.head.num_classes
        self.label_smoothing = label_smoothing
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, inputs: Tensor, data_samples: list[dict] | None = None, mode: str = "tensor"):
        logits = self.head(self.backbone(inputs))["cls_logits"]
        if mode == "tensor":
            return logits
        if mode == "loss":
            labels = self._labels(data_samples, logits.device)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
            return {"loss_cls": loss}
        if mode == "predict":
            scores = logits.float().softmax(dim=1)
            pred_labels = scores.argmax(dim=1).tolist()
            predictions = [
                {"pred_score": score, "pred_label": label}
                for score, label in zip(scores, pred_labels, strict=True)
            ]
            for prediction, sample in zip(predictions, data_samples or (), strict=False):
                if "label" in sample:
                    prediction["gt_label"] = int(sample["label"])
                if "meta" in sample:
                    prediction["meta"] = sample["meta"]
            return predictions
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    def load_torchvision_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load a torchvision ``mobilenet_v2`` state dict: ``features.*`` into the
        backbone, ``classifier.1.*`` into the head's linear layer.

        Accepts and refuses what every weight loader does
        (:mod:`mtvision.utils.state_dict`); raises
        :class:`~mtvision.errors.CheckpointError` listing missing, unexpected or
        mis-shaped keys.
        """
        state_dict = unwrap_state_dict(state_dict, "torchvision mobilenet_v2 weights")
        torchvision_head = {k: v for k, v in state_dict.items() if k.startswith("classifier.")}
        check_state_dict_fits(
            {f"classifier.1.{k}": v for k, v in self.head.fc.state_dict().items()},
            torchvision_head,
            source="torchvision mobilenet_v2 weights",
            model_name=f"the classifier head ({self.num_classes} classes)",
        )
        self.backbone.load_torchvision_state_dict(
            {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        )
        self.head.fc.load_state_dict(
            {k.removeprefix("classifier.1."): v for k, v in torchvision_head.items()}
        )

    @staticmethod
    def _labels(data_samples: list[dict] | None, device: torch.device) -> Tensor:
        if not data_samples or any("label" not in sample for sample in data_samples):
            raise ValueError("mode='loss' needs data_samples with a 'label' for every image")
        return torch.as_tensor([int(sample["label"]) for sample in data_samples], device=device)
