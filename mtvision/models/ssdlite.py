"""SSDLite detector (MobileNetV2 paper, section 6.2): backbone taps + extras + SSDLite head,
with anchor matching, the SSD loss and box post-processing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image, sigmoid_focal_loss

from mtvision.heads.ssdlite_extras import DEFAULT_DEPTHS, SSDLiteExtras
from mtvision.heads.ssdlite_head import SSDLiteHead
from mtvision.layers.feature_spec import select_specs
from mtvision.models.data_preprocessor import build_data_preprocessor
from mtvision.ops.anchors import GridAnchorGenerator
from mtvision.ops.box_coder import BoxCoder
from mtvision.ops.matcher import SSDMatcher
from mtvision.registry import MODELS

SOFTMAX = "softmax"
FOCAL = "focal"
DEFAULT_TEST_CFG = dict(
    score_threshold=0.01, topk_candidates=300, nms_iou_threshold=0.6, max_detections=100
)


@MODELS.register_module()
class SSDLite(BaseModel):
    """SSDLite: predictions on two backbone taps and four extra layers, SSD loss, NMS.

    Layout (paper section 6.2, width 1.0, 320x320 input)::

        layer15_expansion  576 ch, stride 16 -> 20x20 ┐
        final_conv        1280 ch, stride 32 -> 10x10 │
        extra1..4  512/256/256/128 ch        -> 5, 3, 2, 1 ┴-> SSDLiteHead -> scores, box codes

    The head is built from the :class:`FeatureSpec` of the backbone taps and of
    :class:`SSDLiteExtras`, so no channel count appears in a config. Anchors come from
    ``anchor_generator`` (default TF's ``ssd_anchor_generator``: 3 boxes per cell on
    the first map, 6 on the others, 2034 anchors at 320x320; see
    :mod:`mtvision.ops.anchors`), computed for the actual feature-map and input
    sizes, so any input size works.

    Args:
        backbone: config dict (built with ``out_features=in_features``) or a built
            backbone whose ``out_features`` are ``in_features``.
        num_classes: foreground classes C; softmax scoring adds a background class.
        in_features: backbone taps to predict on; the extras grow from the last one.
        extra_depths: output channels of the extra layers (absolute, not scaled by
            the backbone's width multiplier).
        anchor_generator: config dict (``type`` ``"SSDAnchorGenerator"`` or
            ``"DefaultBoxGenerator"``, or the class) or a built generator.
        box_coder_weights: (wx, wy, ww, wh) of :class:`~mtvision.ops.BoxCoder`.
        iou_threshold: matching IoU for a positive anchor (each ground truth's best
            anchor is positive regardless).
        cls_loss: ``"softmax"``: (C + 1)-way cross-entropy with hard negative mining
            (``neg_pos_ratio`` negatives per positive in each image, at least
            ``min_negatives_per_image``; TF's ssdlite config uses 3, torchvision and
            mmdet 0), or ``"focal"``: C sigmoid outputs with
            ``torchvision.ops.sigmoid_focal_loss`` over all anchors.
        focal_alpha, focal_gamma: focal loss parameters.
        test_cfg: post-processing, defaults ``score_threshold=0.01`` (keep low for
            COCO mAP), ``topk_candidates=300`` (per class, before NMS),
            ``nms_iou_threshold=0.6``, ``max_detections=100``.
        bn_eps, bn_momentum: set on every BatchNorm of the model, backbone
            included (PyTorch momentum 0.03 = TF decay 0.97, the SSDLite recipe of
            torchvision and mmdet).
        data_preprocessor: batch preprocessor config; default ``DataPreprocessor``.
        channels_last: keep weights in channels-last memory format.

    ``forward(inputs, data_samples, mode)``, ``inputs`` normalised (N, 3, H, W):

    - ``"tensor"``: ``{"cls_logits": (N, A, C + 1 or C), "bbox_regression": (N, A, 4)}``,
      raw scores and box codes of the A anchors,
    - ``"loss"``: ``{"loss_cls", "loss_bbox"}``, both divided by the number of
      positive anchors in the batch (at least 1); ``data_samples`` need ``boxes``
      (M, 4) float xyxy pixels of ``inputs`` and ``labels`` (M,) int64 in 0..C-1,
    - ``"predict"``: per image ``{"boxes": float32 (K, 4) xyxy in pixels of the
      original image, "scores": float32 (K,), "labels": int64 (K,) in 0..C-1,
      "meta": the sample's meta}``. Boxes are clipped to the image region of the
      input (``meta["img_shape"]``; padding is at the bottom/right) and scaled by
      ``meta["ori_shape"] / meta["img_shape"]`` per axis, which is exact when the
      test pipeline only resizes. Without a meta, boxes stay in input pixels.

    Weights: backbone as :class:`~mtvision.backbones.MobileNetV2`; extras and head
    convs ~ N(0, 0.03) with zero biases (torchvision's SSDLite init).

    Size at width 1.0, 80 classes, 320x320 (``mtvision.utils.complexity``):
    4,337,013 parameters and 788,830,144 multiply-adds (paper Table 6: 4.3M, 0.8B), of
    which extras + predictors 2,113,141 parameters and 177,617,344 multiply-adds.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        num_classes: int,
        in_features: Sequence[str] = ("layer15_expansion", "final_conv"),
        extra_depths: Sequence[int] = DEFAULT_DEPTHS,
        anchor_generator: dict | GridAnchorGenerator | None = None,
        box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        iou_threshold: float = 0.5,
        cls_loss: str = SOFTMAX,
        neg_pos_ratio: float = 3.0,
        min_negatives_per_image: int = 0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        test_cfg: dict | None = None,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.03,
        data_preprocessor: dict | nn.Module | None = None,
        channels_last: bool = False,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(
            data_preprocessor=build_data_preprocessor(data_preprocessor), init_cfg=init_cfg
        )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if cls_loss not in (SOFTMAX, FOCAL):
            raise ValueError(f"cls_loss must be {SOFTMAX!r} or {FOCAL!r}, got {cls_loss!r}")
        unknown = set(test_cfg or {}) - set(DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(
                f"unknown test_cfg key(s) {sorted(unknown)}; known: {sorted(DEFAULT_TEST_CFG)}"
            )
        in_features = tuple(in_features)
        if isinstance(backbone, dict):
            backbone = MODELS.build({**backbone, "out_features": in_features})
        elif tuple(backbone.out_features) != in_features:
            raise ValueError(
                f"the backbone returns {tuple(backbone.out_features)} but SSDLite reads "
                f"in_features={in_features}"
            )
        if anchor_generator is None:
            anchor_generator = dict(type="SSDAnchorGenerator")
        if isinstance(anchor_generator, dict):
            anchor_generator = MODELS.build(anchor_generator)

        self.backbone = backbone
        backbone_specs = select_specs(backbone.feature_info, in_features)
        self.extras = SSDLiteExtras(backbone_specs[-1], depths=extra_depths)
        specs = [*backbone_specs, *self.extras.feature_info]
        if anchor_generator.num_layers != len(specs):
            raise ValueError(
                f"the anchor generator has {anchor_generator.num_layers} layers but SSDLite "
                f"predicts on {len(specs)} feature maps {[spec.name for spec in specs]}"
            )
        self.num_classes = num_classes
        self.cls_loss = cls_loss
        self.head = SSDLiteHead(
            specs,
            anchor_generator.num_anchors_per_location(),
            num_class_logits=num_classes + 1 if cls_loss == SOFTMAX else num_classes,
        )
        self.anchor_generator = anchor_generator
        self.box_coder = BoxCoder(box_coder_weights)
        self.matcher = SSDMatcher(iou_threshold)
        self.neg_pos_ratio = neg_pos_ratio
        self.min_negatives_per_image = min_negatives_per_image
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.test_cfg = {**DEFAULT_TEST_CFG, **(test_cfg or {})}

        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eps = bn_eps
                module.momentum = bn_momentum
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # ---------------------------------------------------------------- forward

    def forward(self, inputs: Tensor, data_samples: list[dict] | None = None, mode: str = "tensor"):
        if mode not in ("tensor", "loss", "predict"):
            raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
        features = self.backbone(inputs)
        features.update(self.extras(features))
        head_outputs = self.head(features)
        if mode == "tensor":
            return head_outputs
        feature_sizes = [tuple(features[spec.name].shape[-2:]) for spec in self.head.in_specs]
        anchors = self.anchor_generator(
            feature_sizes, tuple(inputs.shape[-2:]), device=inputs.device
        )
        if mode == "loss":
            return self.loss(head_outputs, anchors, data_samples)
        return self.predict(head_outputs, anchors, tuple(inputs.shape[-2:]), data_samples)

    # ------------------------------------------------------------------- loss

    def loss(
        self, head_outputs: dict[str, Tensor], anchors: Tensor, data_samples: list[dict] | None
    ) -> dict[str, Tensor]:
        """SSD loss of a batch; see the class docstring. ``anchors``: (A, 4) xyxy pixels."""
        cls_logits = head_outputs["cls_logits"].float()
        bbox_regression = head_outputs["bbox_regression"].float()
        batch_size, num_anchors = cls_logits.shape[:2]
        targets = self._targets(data_samples, batch_size, anchors.device)

        # Class targets: 0 = background, c + 1 = foreground class c.
        class_targets = torch.zeros(
            (batch_size, num_anchors), dtype=torch.int64, device=anchors.device
        )
        positive_codes, positive_targets = [], []
        for index, (boxes, labels) in enumerate(targets):
            matches = self.matcher(boxes, anchors)
            positive = torch.nonzero(matches >= 0).squeeze(1)
            matched_gt = matches[positive]
            class_targets[index, positive] = labels[matched_gt] + 1
            positive_codes.append(bbox_regression[index, positive])
            positive_targets.append(self.box_coder.encode(boxes[matched_gt], anchors[positive]))

        is_positive = class_targets > 0
        normaliser = is_positive.sum().clamp(min=1).float()
        loss_bbox = (
            F.smooth_l1_loss(
                torch.cat(positive_codes), torch.cat(positive_targets), beta=1.0, reduction="sum"
            )
            / normaliser
        )
        if self.cls_loss == SOFTMAX:
            loss_cls = self._hard_negative_cross_entropy(cls_logits, class_targets) / normaliser
        else:
            one_hot = F.one_hot(class_targets, self.num_classes + 1)[..., 1:].to(cls_logits.dtype)
            loss_cls = (
                sigmoid_focal_loss(
                    cls_logits,
                    one_hot,
                    alpha=self.focal_alpha,
                    gamma=self.focal_gamma,
                    reduction="sum",
                )
                / normaliser
            )
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    def _hard_negative_cross_entropy(self, cls_logits: Tensor, class_targets: Tensor) -> Tensor:
        """Summed cross-entropy of all positives and of the hardest negatives of each image.

        ``cls_logits`` (N, A, C + 1), ``class_targets`` (N, A) with 0 = background.
        """
        batch_size, num_anchors, num_logits = cls_logits.shape
        losses = F.cross_entropy(
            cls_logits.reshape(-1, num_logits), class_targets.reshape(-1), reduction="none"
        ).view(batch_size, num_anchors)
        is_positive = class_targets > 0
        num_positive = is_positive.sum(dim=1)
        num_negative = (self.neg_pos_ratio * num_positive).long()
        num_negative = num_negative.clamp(min=self.min_negatives_per_image)
        num_negative = torch.minimum(num_negative, num_anchors - num_positive)
        # Rank negatives by their loss; positives sort last.
        negative_losses = losses.detach().masked_fill(is_positive, -float("inf"))
        rank = negative_losses.argsort(dim=1, descending=True).argsort(dim=1)
        is_hard_negative = rank < num_negative.unsqueeze(1)
        return losses[is_positive].sum() + losses[is_hard_negative].sum()

    def _targets(
        self, data_samples: list[dict] | None, batch_size: int, device: torch.device
    ) -> list[tuple[Tensor, Tensor]]:
        """Checked (boxes (M, 4) float32, labels (M,) int64) of every image."""
        if not data_samples or len(data_samples) != batch_size:
            raise ValueError(
                f"mode='loss' needs one data sample per image ({batch_size}), got "
                f"{0 if not data_samples else len(data_samples)}"
            )
        targets = []
        for sample in data_samples:
            source = sample.get("meta", {}).get("img_path", "<no meta['img_path']>")
            if "boxes" not in sample or "labels" not in sample:
                raise ValueError(f"{source}: a detection sample needs 'boxes' and 'labels'")
            boxes = torch.as_tensor(sample["boxes"], dtype=torch.float32, device=device)
            labels = torch.as_tensor(sample["labels"], dtype=torch.int64, device=device)
            if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
                raise ValueError(
                    f"{source}: boxes must be (M, 4) with labels (M,), got "
                    f"{tuple(boxes.shape)} and {tuple(labels.shape)}"
                )
            bad_label = torch.nonzero((labels < 0) | (labels >= self.num_classes)).flatten()
            if bad_label.numel():
                index = int(bad_label[0])
                raise ValueError(
                    f"{source}: box {index} has label {int(labels[index])}, outside 0.."
                    f"{self.num_classes - 1} (num_classes={self.num_classes})"
                )
            degenerate = ~torch.isfinite(boxes).all(dim=1) | (boxes[:, 2] <= boxes[:, 0])
            degenerate |= boxes[:, 3] <= boxes[:, 1]
            if degenerate.any():
                index = int(torch.nonzero(degenerate)[0])
                raise ValueError(
                    f"{source}: box {index} {boxes[index].tolist()} is not a finite xyxy box "
                    "with positive width and height"
                )
            targets.append((boxes, labels))
        return targets

    # ------------------------------------------------------------ predictions

    @torch.no_grad()
    def predict(
        self,
        head_outputs: dict[str, Tensor],
        anchors: Tensor,
        input_size: tuple[int, int],
        data_samples: list[dict] | None = None,
    ) -> list[dict]:
        """Scores, decoded boxes, per-class top-k, NMS, mapping to original pixels."""
        cls_logits = head_outputs["cls_logits"].float()
        if self.cls_loss == SOFTMAX:
            scores = cls_logits.softmax(dim=-1)[..., 1:]
        else:
            scores = cls_logits.sigmoid()
        boxes = self.box_coder.decode(head_outputs["bbox_regression"].float(), anchors)
        cfg = self.test_cfg
        num_anchors = anchors.shape[0]
        class_ids = torch.arange(self.num_classes, device=anchors.device)

        predictions = []
        for index in range(boxes.shape[0]):
            meta = data_samples[index].get("meta") if data_samples else None
            img_shape = tuple(int(v) for v in (meta or {}).get("img_shape", input_size))
            ori_shape = tuple(int(v) for v in (meta or {}).get("ori_shape", img_shape))
            image_boxes = clip_boxes_to_image(boxes[index], img_shape)

            # Per-class top-k over anchors: (C, k) candidates, then the score threshold.
            top_scores, top_anchors = scores[index].T.topk(
                min(cfg["topk_candidates"], num_anchors), dim=1
            )
            keep = top_scores > cfg["score_threshold"]
            candidate_scores = top_scores[keep]
            candidate_boxes = image_boxes[top_anchors[keep]]
            candidate_labels = class_ids.unsqueeze(1).expand_as(top_scores)[keep]
            kept = batched_nms(
                candidate_boxes, candidate_scores, candidate_labels, cfg["nms_iou_threshold"]
            )[: cfg["max_detections"]]

            scale_y = ori_shape[0] / img_shape[0]
            scale_x = ori_shape[1] / img_shape[1]
            scale = candidate_boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
            prediction = {
                "boxes": candidate_boxes[kept] * scale,
                "scores": candidate_scores[kept],
                "labels": candidate_labels[kept],
            }
            if meta is not None:
                prediction["meta"] = meta
            predictions.append(prediction)
        return predictions
