"""SSDLite detection head (MobileNetV2 paper, section 6.2): extra layers, predictors, anchors,
the SSD loss (matching + 3:1 hard negative mining, or focal) and box post-processing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from mtvision.heads.base import Head, annotated_samples, merge_test_cfg, sample_source, zero_loss
from mtvision.heads.ssdlite_extras import DEFAULT_DEPTHS, SSDLiteExtras
from mtvision.heads.ssdlite_predictors import SSDLitePredictors
from mtvision.layers.feature_spec import FeatureSpec
from mtvision.ops.anchors import GridAnchorGenerator
from mtvision.ops.box_coder import BoxCoder
from mtvision.ops.matcher import SSDMatcher
from mtvision.ops.ssd_postprocess import decode_detections
from mtvision.registry import MODELS
from mtvision.tasks import DETECTION
from mtvision.tasks.detection import detections_to_original
from mtvision.utils.boxes import first_invalid_box

SOFTMAX = "softmax"
FOCAL = "focal"
DEFAULT_TEST_CFG = dict(
    score_threshold=0.01, topk_candidates=300, nms_iou_threshold=0.6, max_detections=100
)


@MODELS.register_module()
class SSDLiteHead(Head):
    """SSDLite: predictions on backbone taps and extra layers, SSD loss, NMS.

    Layout (paper section 6.2, width 1.0, 320x320 input, backbone at output stride 32)::

        layer15_expansion  576 ch, stride 16 -> 20x20 ┐
        final_conv        1280 ch, stride 32 -> 10x10 │
        extra1..4  512/256/256/128 ch        -> 5, 3, 2, 1 ┴-> predictors -> scores, box codes

    Parts: ``extras`` (:class:`SSDLiteExtras`, grown from the last tap of
    ``in_features``) and ``predictors`` (:class:`SSDLitePredictors`), both built
    from :class:`FeatureSpec` s, so no channel count appears in a config; plus the
    anchor generator, :class:`~mtvision.ops.BoxCoder` and
    :class:`~mtvision.ops.SSDMatcher`. Strides come from the specs: with a backbone
    at output stride 16, ``final_conv`` is a stride-16 map and the six maps of a
    320x320 input are 20, 20, 10, 5, 3, 2. Anchors (default TF's
    ``ssd_anchor_generator``: 3 boxes per cell on the first map, 6 on the others,
    2034 anchors for 20, 10, 5, 3, 2, 1 maps; see :mod:`mtvision.ops.anchors`) are
    computed for the map sizes ``ceil(H / stride)`` of the actual input, so any
    input size works.

    Args:
        feature_info: the backbone's taps; the head selects ``in_features``.
        num_classes: foreground classes C; softmax scoring adds a background class.
        in_features: backbone taps to predict on, shallow to deep; default
            ``("layer15_expansion", "final_conv")``.
        extra_depths: output channels of the extra layers (absolute, not scaled by
            the backbone's width multiplier).
        anchor_generator: config dict (``type`` ``"SSDAnchorGenerator"`` or
            ``"DefaultBoxGenerator"``) or a built generator; it needs one layer per
            map (``len(in_features) + len(extra_depths)``).
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
            COCO mAP), ``topk_candidates=300`` (per class, before NMS; ``None``: no
            cap, which saves a top-k over (N, C, A) scores when a higher score
            threshold already leaves few candidates, as deployed graphs often do),
            ``nms_iou_threshold=0.6``, ``max_detections=100``.
        padding: ``"symmetric"`` or ``"same"`` (TF's rule) for the extra layers'
            stride-2 convs (the predictors are stride 1, where both rules agree).
        init_cfg: mmengine initialisation config (e.g. ``Pretrained`` with a prefix).

    Contract (see ``docs/architecture.md``), for an input batch of (H, W):

    - ``forward(features)``: ``{"cls_logits": (N, A, C + 1 or C), "bbox_regression":
      (N, A, 4)}``, raw scores and box codes of the A anchors.
    - ``loss(outputs, data_samples, input_size=(H, W))``: ``{"loss_cls", "loss_bbox"}``,
      both divided by the number of positive anchors (at least 1), over the samples
      that carry ``boxes`` (M, 4) float xyxy pixels of the input and ``labels`` (M,)
      int64 in 0..C-1 (M may be 0: an image without objects). Samples without them
      give no loss.
    - ``predict(outputs, data_samples, input_size)``: per image ``{"boxes": float32
      (K, 4) xyxy in pixels of the original image, "scores": float32 (K,), "labels":
      int64 (K,) in 0..C-1}``: :meth:`postprocess` (tensor operations), then
      :meth:`to_original` (boxes clipped to ``meta["img_shape"]`` and scaled by
      ``meta["ori_shape"] / meta["img_shape"]`` per axis, which is exact when the
      test pipeline only resizes; without a meta, boxes stay in input pixels).

    Weights: extras and predictor convs ~ N(0, 0.03) with zero biases (torchvision's
    SSDLite init).

    Size at width 1.0, 80 classes: extras 656,960 and predictors 1,456,181
    parameters (paper Table 5: 2.1M for the "SSDLite head").
    """

    task = DETECTION
    in_features: tuple[str, ...] = ("layer15_expansion", "final_conv")

    def __init__(
        self,
        feature_info: Sequence[FeatureSpec],
        num_classes: int,
        in_features: Sequence[str] | None = None,
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
        padding: str = "symmetric",
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if cls_loss not in (SOFTMAX, FOCAL):
            raise ValueError(f"cls_loss must be {SOFTMAX!r} or {FOCAL!r}, got {cls_loss!r}")
        self.test_cfg = merge_test_cfg(test_cfg, DEFAULT_TEST_CFG, "SSDLiteHead")
        backbone_specs = self.select_taps(feature_info, in_features)
        if anchor_generator is None:
            anchor_generator = dict(type="SSDAnchorGenerator")
        if isinstance(anchor_generator, dict):
            anchor_generator = MODELS.build(anchor_generator)

        self.extras = SSDLiteExtras(backbone_specs[-1], depths=extra_depths, padding=padding)
        self.level_specs: list[FeatureSpec] = [*backbone_specs, *self.extras.feature_info]
        if anchor_generator.num_layers != len(self.level_specs):
            raise ValueError(
                f"the anchor generator has {anchor_generator.num_layers} layers but SSDLite "
                f"predicts on {len(self.level_specs)} feature maps "
                f"{[spec.name for spec in self.level_specs]}"
            )
        self.num_classes = num_classes
        self.cls_loss = cls_loss
        self.predictors = SSDLitePredictors(
            self.level_specs,
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

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Backbone taps -> extras -> predictors: ``{"cls_logits", "bbox_regression"}``."""
        levels = {name: features[name] for name in self.in_features}
        levels.update(self.extras(levels))
        return self.predictors(levels)

    def anchors(self, input_size: tuple[int, int], device: torch.device | None = None) -> Tensor:
        """(A, 4) xyxy anchors in pixels of an (H, W) input, in the predictors' order.

        Map sizes are ``ceil(H / stride)``, ``ceil(W / stride)`` of each level's spec.
        """
        height, width = (int(v) for v in input_size)
        sizes = [(-(-height // s.stride), -(-width // s.stride)) for s in self.level_specs]
        return self.anchor_generator(sizes, (height, width), device=device)

    def _anchors_for(self, outputs: dict[str, Tensor], input_size: tuple[int, int]) -> Tensor:
        anchors = self.anchors(input_size, device=outputs["cls_logits"].device)
        if anchors.shape[0] != outputs["cls_logits"].shape[1]:
            raise ValueError(
                f"input_size {tuple(input_size)} gives {anchors.shape[0]} anchors but the "
                f"outputs have {outputs['cls_logits'].shape[1]} predictions; pass the (H, W) "
                "of the input the outputs were computed from"
            )
        return anchors

    # ------------------------------------------------------------------- loss

    def loss(
        self,
        outputs: dict[str, Tensor],
        data_samples: Sequence[dict] | None,
        input_size: tuple[int, int],
    ) -> dict[str, Tensor]:
        """SSD loss of the samples with ``boxes`` and ``labels``; see the class docstring."""
        cls_logits = outputs["cls_logits"].float()
        bbox_regression = outputs["bbox_regression"].float()
        indices = annotated_samples(
            data_samples, ("boxes", "labels"), len(cls_logits), "SSDLiteHead"
        )
        if not indices:
            zero = zero_loss(outputs)
            return {"loss_cls": zero, "loss_bbox": zero.clone()}
        if len(indices) < len(cls_logits):
            cls_logits, bbox_regression = cls_logits[indices], bbox_regression[indices]
        anchors = self._anchors_for(outputs, input_size)
        targets = self._targets([data_samples[i] for i in indices], anchors.device)
        batch_size, num_anchors = cls_logits.shape[:2]

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
        self, data_samples: Sequence[dict], device: torch.device
    ) -> list[tuple[Tensor, Tensor]]:
        """Checked (boxes (M, 4) float32, labels (M,) int64) of every sample."""
        targets = []
        for sample in data_samples:
            source = sample_source(sample)
            boxes = torch.as_tensor(sample["boxes"], dtype=torch.float32, device=device)
            labels = torch.as_tensor(sample["labels"], dtype=torch.int64, device=device)
            if boxes.numel() == 0:
                boxes = boxes.reshape(0, 4)
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
            index = first_invalid_box(boxes)
            if index is not None:
                raise ValueError(
                    f"{source}: box {index} {boxes[index].tolist()} is not a finite xyxy box "
                    "with positive width and height"
                )
            targets.append((boxes, labels))
        return targets

    # ------------------------------------------------------------ predictions

    @torch.no_grad()
    def postprocess(
        self, outputs: dict[str, Tensor], input_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Scores, decoded boxes clipped to the input, per-class top-k, batched NMS.

        Tensor operations on the whole batch (no per-image loop). Returns, with
        D = ``max_detections``, detections sorted by score within each image::

            {"boxes": (N, D, 4) float32 xyxy input pixels, "scores": (N, D) float32,
             "labels": (N, D) int64, "num_detections": (N,) int64}

        Entries at and after ``num_detections[i]`` are padding (boxes and scores 0,
        labels -1).
        """
        anchors = self._anchors_for(outputs, input_size)
        return decode_detections(
            self.class_scores(outputs),
            outputs["bbox_regression"].float(),
            anchors,
            self.box_coder,
            input_size,
            self.test_cfg,
        )

    def class_scores(self, outputs: dict[str, Tensor]) -> Tensor:
        """(N, A, C) class probabilities of the anchors: softmax without the background
        column (``cls_loss="softmax"``) or sigmoid (focal loss)."""
        cls_logits = outputs["cls_logits"].float()
        if self.cls_loss == SOFTMAX:
            return cls_logits.softmax(dim=-1)[..., 1:]
        return cls_logits.sigmoid()

    def deploy(
        self, outputs: dict[str, Tensor], input_size: tuple[int, int], nms: bool = True
    ) -> dict[str, Tensor]:
        """What an exported graph returns: :meth:`postprocess`'s padded detections (its NMS
        exports as ONNX ``NonMaxSuppression``); with ``nms=False`` (runtimes without an
        NMS op: LiteRT, ExecuTorch) the raw SSD outputs ``{"anchor_scores": (N, A, C) class
        probabilities, "box_regression": (N, A, 4) box codes in TF's (ty, tx, th, tw)
        order}``, decoded and suppressed outside the graph (by
        :func:`~mtvision.ops.decode_detections` or MediaPipe's ``ObjectDetector``, whose
        SSD decoder, like TF's ``TFLite_Detection_PostProcess``, reads y before x) with the
        anchors recorded in the file's metadata."""
        if nms:
            return self.postprocess(outputs, input_size)
        # No anchors computed here: the graph would carry them as unused float64
        # constants, which PT2E quantisation refuses; they are in the metadata.
        codes = outputs["bbox_regression"].float()
        return {
            "anchor_scores": self.class_scores(outputs),
            "box_regression": codes[..., [1, 0, 3, 2]],
        }

    def to_original(self, results: dict[str, Tensor], data_samples: Sequence[dict]) -> list[dict]:
        """:func:`~mtvision.tasks.detection.detections_to_original`."""
        return detections_to_original(results, data_samples)
