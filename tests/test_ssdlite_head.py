"""SSDLiteHead's contract: outputs per anchor, the SSD loss (0 and 1 boxes, missing annotations),
batched post-processing, boxes back to the original image, strides from the specs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from mtvision.heads import SSDLiteHead
from mtvision.layers import FeatureSpec

NUM_CLASSES = 3
INPUT = (64, 64)
# A backbone's taps as specs (small channels): SSDLite reads the last two.
SPECS = [
    FeatureSpec("stage5", 16, 16),
    FeatureSpec("layer15_expansion", 24, 16),
    FeatureSpec("final_conv", 32, 32),
]


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _head(seed: int = 0, specs=SPECS, **kwargs) -> SSDLiteHead:
    torch.manual_seed(seed)
    return SSDLiteHead(specs, num_classes=NUM_CLASSES, extra_depths=(16, 16, 16, 16), **kwargs)


def _features(batch: int, size=INPUT, specs=SPECS, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        spec.name: torch.randn(
            batch,
            spec.channels,
            math.ceil(size[0] / spec.stride),
            math.ceil(size[1] / spec.stride),
            generator=generator,
        )
        for spec in specs
    }


def _samples(*boxes_per_image) -> list[dict]:
    samples = []
    for index, boxes in enumerate(boxes_per_image):
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        samples.append(
            {
                "boxes": boxes,
                "labels": torch.full((len(boxes),), 2, dtype=torch.int64),
                "meta": {"img_path": f"image{index}.jpg"},
            }
        )
    return samples


# ------------------------------------------------------------------ building


def test_head_reads_its_taps_and_predicts_per_anchor() -> None:
    head = _head().eval()
    assert head.in_features == ("layer15_expansion", "final_conv")
    assert [spec.stride for spec in head.level_specs] == [16, 32, 64, 128, 256, 512]
    features = _features(2)
    del features["stage5"]  # not read
    outputs = head(features)
    # Maps 4, 2, 1, 1, 1, 1 at 64x64: 3 boxes per cell on the first, 6 on the others.
    num_anchors = 16 * 3 + 6 * (4 + 1 + 1 + 1 + 1)
    assert head.anchors(INPUT).shape == (num_anchors, 4)
    assert outputs["cls_logits"].shape == (2, num_anchors, NUM_CLASSES + 1)
    assert outputs["bbox_regression"].shape == (2, num_anchors, 4)
    assert set(outputs) == {"cls_logits", "bbox_regression"}


def test_strides_come_from_the_specs_at_output_stride_16() -> None:
    # A backbone at output stride 16 dilates its last stage: final_conv is a stride-16 map.
    specs = [FeatureSpec("layer15_expansion", 24, 16), FeatureSpec("final_conv", 32, 16)]
    head = _head(specs=specs).eval()
    assert [spec.stride for spec in head.level_specs] == [16, 16, 32, 64, 128, 256]
    size = (320, 320)
    outputs = head(_features(2, size, specs))
    sizes = [math.ceil(320 / spec.stride) for spec in head.level_specs]
    assert sizes == [20, 20, 10, 5, 3, 2]
    num_anchors = 20 * 20 * 3 + 6 * (400 + 100 + 25 + 9 + 4)
    assert outputs["cls_logits"].shape == (2, num_anchors, NUM_CLASSES + 1)
    # Anchors tile every map: the second 20x20 level has 6 boxes per cell centred on it.
    anchors = head.anchors(size)
    assert anchors.shape == (num_anchors, 4)
    centres = (anchors[1200:3600, :2] + anchors[1200:3600, 2:]) / 2
    expected = torch.arange(20.0) * 16 + 8
    torch.testing.assert_close(
        centres.view(20, 20, 6, 2)[..., 0], expected.view(1, 20, 1).expand(20, 20, 6)
    )
    losses = head.loss(outputs, _samples([[100.0, 90.0, 200.0, 260.0]], []), input_size=size)
    assert losses["loss_bbox"].item() > 0 and losses["loss_cls"].item() > 0
    (prediction, _) = head.predict(outputs, [{}, {}], input_size=size)
    assert prediction["boxes"].shape[1] == 4


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="anchor generator has 5 layers"):
        _head(anchor_generator=dict(type="SSDAnchorGenerator", num_layers=5))
    with pytest.raises(
        ValueError, match=r"SSDLiteHead: unknown test_cfg key\(s\) \['nms_threshold'\]"
    ):
        _head(test_cfg=dict(nms_threshold=0.5))
    with pytest.raises(ValueError, match="cls_loss"):
        _head(cls_loss="sigmoid")
    with pytest.raises(KeyError, match="unknown feature tap"):
        _head(in_features=("stage4", "final_conv"))
    head = _head().eval()
    outputs = head(_features(1))
    with pytest.raises(ValueError, match=r"input_size \(96, 96\) gives .* anchors"):
        head.predict(outputs, [{}], input_size=(96, 96))


# ---------------------------------------------------------------------- loss


def _expected_softmax_loss(head, outputs, samples, neg_pos_ratio=3, min_negatives=0):
    """The SSD loss recomputed from the outputs with topk-based negative mining."""
    anchors = head.anchors(INPUT)
    total_cls, total_box, total_positive = 0.0, 0.0, 0
    for logits, codes, sample in zip(
        outputs["cls_logits"].detach(), outputs["bbox_regression"].detach(), samples, strict=True
    ):
        matches = head.matcher(sample["boxes"], anchors)
        positive = matches >= 0
        targets = torch.zeros(len(anchors), dtype=torch.int64)
        targets[positive] = sample["labels"][matches[positive]] + 1
        losses = F.cross_entropy(logits, targets, reduction="none")
        num_negative = max(int(neg_pos_ratio * int(positive.sum())), min_negatives)
        total_cls += losses[positive].sum() + losses[~positive].topk(num_negative).values.sum()
        encoded = head.box_coder.encode(sample["boxes"][matches[positive]], anchors[positive])
        total_box += F.smooth_l1_loss(codes[positive], encoded, reduction="sum")
        total_positive += int(positive.sum())
    normaliser = max(total_positive, 1)
    return float(total_cls) / normaliser, float(total_box) / normaliser, total_positive


def test_loss_without_ground_truth_is_zero_and_has_finite_gradients() -> None:
    head = _head().eval()
    losses = head.loss(head(_features(2)), _samples([], []), input_size=INPUT)
    assert set(losses) == {"loss_cls", "loss_bbox"}
    # No positives: no box loss and, with mmdet/torchvision's 0 minimum negatives, no
    # classification loss either.
    assert losses["loss_bbox"].item() == 0.0
    assert losses["loss_cls"].item() == 0.0
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    grads = [p.grad for p in head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_loss_without_ground_truth_with_minimum_negatives() -> None:
    head = _head(min_negatives_per_image=3).eval()
    outputs = head(_features(2))
    samples = _samples([], [])
    losses = head.loss(outputs, samples, input_size=INPUT)
    expected_cls, expected_box, positives = _expected_softmax_loss(
        head, outputs, samples, min_negatives=3
    )
    assert positives == 0 and expected_box == 0.0
    assert losses["loss_bbox"].item() == 0.0
    # 3 hardest background anchors per image, divided by max(0, 1): about 6 * log(4).
    assert losses["loss_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
    assert 5.0 < losses["loss_cls"].item() < 12.0


def test_loss_with_one_box_matches_a_direct_computation() -> None:
    head = _head().eval()
    outputs = head(_features(2))
    samples = _samples([[8.0, 10.0, 40.0, 50.0]], [])
    losses = head.loss(outputs, samples, input_size=INPUT)
    expected_cls, expected_box, positives = _expected_softmax_loss(head, outputs, samples)
    assert positives >= 1
    assert losses["loss_bbox"].item() > 0.0
    assert losses["loss_cls"].item() > 0.0
    assert losses["loss_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(expected_box, rel=1e-5)
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
    box_grads = [block[1].weight.grad.abs().sum() for block in head.predictors.bbox_predictors]
    assert sum(box_grads) > 0


def test_samples_without_boxes_give_no_loss() -> None:
    head = _head().eval()
    outputs = head(_features(3))
    outputs["cls_logits"].retain_grad()
    annotated = _samples([[8.0, 10.0, 40.0, 50.0]], [[20.0, 4.0, 60.0, 30.0], [1.0, 2.0, 9.0, 9.0]])
    batch = [annotated[0], {"meta": {"img_path": "unlabelled.jpg"}}, annotated[1]]
    losses = head.loss(outputs, batch, input_size=INPUT)
    # The same as the loss of the two annotated images alone (normalised by their positives).
    alone = {key: value.detach()[[0, 2]] for key, value in outputs.items()}
    expected = head.loss(alone, annotated, input_size=INPUT)
    for key in ("loss_cls", "loss_bbox"):
        assert losses[key].item() == pytest.approx(expected[key].item(), rel=1e-6)
        assert losses[key].item() > 0
    losses["loss_cls"].backward()
    assert outputs["cls_logits"].grad[1].abs().max() == 0
    assert outputs["cls_logits"].grad[0].abs().max() > 0


def test_no_annotated_sample_gives_an_exact_zero_that_reaches_every_parameter() -> None:
    head = _head().train()
    outputs = head(_features(2))
    losses = head.loss(outputs, [{}, {"meta": {}}], input_size=INPUT)
    assert losses["loss_cls"].item() == 0.0 and losses["loss_bbox"].item() == 0.0
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    # DistributedDataParallel needs every parameter in the graph: each gets a (zero) gradient.
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().max() == 0, name


def test_focal_loss_variant() -> None:
    head = _head(cls_loss="focal").eval()
    outputs = head(_features(2))
    assert outputs["cls_logits"].shape[-1] == NUM_CLASSES  # no background column

    empty = head.loss(outputs, _samples([], []), input_size=INPUT)
    assert empty["loss_bbox"].item() == 0.0
    logits = outputs["cls_logits"].detach()
    expected_empty = sigmoid_focal_loss(logits, torch.zeros_like(logits), reduction="sum")
    assert empty["loss_cls"].item() == pytest.approx(expected_empty.item(), rel=1e-5)

    samples = _samples([[8.0, 10.0, 40.0, 50.0]], [])
    losses = head.loss(outputs, samples, input_size=INPUT)
    matches = head.matcher(samples[0]["boxes"], head.anchors(INPUT))
    targets = torch.zeros_like(logits)
    targets[0, matches >= 0, 2] = 1.0
    expected = sigmoid_focal_loss(logits, targets, reduction="sum")
    num_positive = int((matches >= 0).sum())
    assert losses["loss_cls"].item() == pytest.approx(expected.item() / num_positive, rel=1e-5)
    assert losses["loss_bbox"].item() > 0.0


def test_bad_targets_name_the_image_and_the_box() -> None:
    head = _head().eval()
    outputs = head(_features(1))
    samples = _samples([[0.0, 0.0, 10.0, 10.0]])
    samples[0]["labels"] = torch.tensor([NUM_CLASSES])
    with pytest.raises(ValueError, match=r"image0.jpg: box 0 has label 3, outside 0..2"):
        head.loss(outputs, samples, input_size=INPUT)
    samples = _samples([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 20.0]])
    with pytest.raises(ValueError, match=r"image0.jpg: box 1 .* positive width and height"):
        head.loss(outputs, samples, input_size=INPUT)
    with pytest.raises(
        ValueError, match=r"a.jpg: a sample with \['boxes'\] also needs \['labels'\]"
    ):
        head.loss(outputs, [{"boxes": torch.zeros(0, 4), "meta": {"img_path": "a.jpg"}}], INPUT)
    with pytest.raises(ValueError, match="one data sample per image"):
        head.loss(outputs, None, input_size=INPUT)


# -------------------------------------------------------------- predictions


def _scripted_outputs(head, anchors, detections):
    """Head outputs that score ``(anchor, class, logit, box)`` detections and nothing else."""
    num_anchors = len(anchors)
    cls_logits = torch.zeros(1, num_anchors, NUM_CLASSES + 1)
    cls_logits[0, :, 0] = 10.0  # background everywhere: foreground scores ~5e-5
    codes = torch.zeros(1, num_anchors, 4)
    for anchor, label, logit, box in detections:
        cls_logits[0, anchor, 0] = 0.0
        cls_logits[0, anchor, label + 1] = logit
        codes[0, anchor] = head.box_coder.encode(torch.tensor(box), anchors[anchor])
    return {"cls_logits": cls_logits, "bbox_regression": codes}


def test_predict_maps_boxes_to_the_original_image() -> None:
    head = _head().eval()
    anchors = head.anchors(INPUT)  # the padded batch
    # The image fills 48 x 60 of the input and was 96 x 30 before resizing:
    # y scales by 2, x by 0.5.
    meta = {"img_path": "a.jpg", "img_shape": (48, 60), "ori_shape": (96, 30), "img_id": 7}
    detections = [
        (5, 2, 10.0, [10.0, 12.0, 40.0, 30.0]),
        (40, 0, 8.0, [50.0, 40.0, 70.0, 60.0]),  # crosses the image border: clipped
        (41, 2, 6.0, [11.0, 12.0, 41.0, 31.0]),  # IoU > 0.6 with the first, same class
        (42, 1, 5.0, [10.0, 12.0, 40.0, 30.0]),  # same box, other class: kept
    ]
    outputs = _scripted_outputs(head, anchors, detections)
    (prediction,) = head.predict(outputs, [{"meta": meta}], input_size=INPUT)

    assert set(prediction) == {"boxes", "scores", "labels"}
    assert prediction["boxes"].dtype == torch.float32 and prediction["boxes"].shape == (3, 4)
    assert prediction["scores"].dtype == torch.float32
    assert prediction["labels"].dtype == torch.int64
    assert prediction["labels"].tolist() == [2, 0, 1]
    expected_boxes = [[5.0, 24.0, 20.0, 60.0], [25.0, 80.0, 30.0, 96.0], [5.0, 24.0, 20.0, 60.0]]
    torch.testing.assert_close(prediction["boxes"], torch.tensor(expected_boxes), atol=1e-3, rtol=0)
    expected_scores = [torch.tensor([0.0, 0.0, 0.0, logit]).softmax(0)[-1] for logit in (10, 8, 5)]
    torch.testing.assert_close(prediction["scores"], torch.stack(expected_scores))

    few = _head(test_cfg=dict(max_detections=2, score_threshold=0.5)).eval()
    (prediction,) = few.predict(outputs, [{"meta": meta}], input_size=INPUT)
    assert prediction["labels"].tolist() == [2, 0]
    # Without a meta the boxes stay in input pixels.
    (bare,) = head.predict(outputs, [{}], input_size=INPUT)
    torch.testing.assert_close(bare["boxes"][1], torch.tensor([50.0, 40.0, 64.0, 60.0]))


def test_postprocess_of_a_batch_equals_image_by_image() -> None:
    head = _head(test_cfg=dict(max_detections=20)).eval()
    generator = torch.Generator().manual_seed(3)
    num_anchors = len(head.anchors(INPUT))
    outputs = {
        "cls_logits": torch.randn(3, num_anchors, NUM_CLASSES + 1, generator=generator) * 3,
        "bbox_regression": torch.randn(3, num_anchors, 4, generator=generator),
    }
    batch = head.postprocess(outputs, INPUT)
    assert batch["boxes"].shape == (3, 20, 4) and batch["labels"].shape == (3, 20)
    assert batch["num_detections"].tolist() == [20, 20, 20]
    for index in range(3):
        single = head.postprocess({k: v[index : index + 1] for k, v in outputs.items()}, INPUT)
        for key in ("boxes", "scores", "labels", "num_detections"):
            assert torch.equal(batch[key][index], single[key][0]), key
        scores = batch["scores"][index]
        assert (scores[:-1] >= scores[1:]).all()  # sorted within each image

    sparse = _head(test_cfg=dict(score_threshold=0.9)).eval().postprocess(outputs, INPUT)
    counts = sparse["num_detections"].tolist()
    assert counts != [0, 0, 0] and max(counts) < 100
    for index, count in enumerate(counts):  # padding after the detections
        assert (sparse["labels"][index, count:] == -1).all()
        assert (sparse["scores"][index, count:] == 0).all()
