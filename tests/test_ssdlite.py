"""SSDLite detector: build, complexity, loss (0 and 1 boxes), post-processing, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from torch import nn
from torchvision.ops import box_iou, sigmoid_focal_loss

import mtvision
from mtvision.export.onnx_export import check_onnx_matches, export_onnx
from mtvision.models.ssdlite import SSDLite
from mtvision.registry import MODELS
from mtvision.utils.complexity import count_multiply_adds, count_parameters

NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    # Many tiny kernels: with two threads on a busy two-core machine each op waits for
    # the other thread's time slice. Measured for the overfit test: 80-190 s with two
    # threads, 3-5 s with one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny_ssdlite(seed: int = 0, **kwargs) -> SSDLite:
    torch.manual_seed(seed)
    return SSDLite(
        backbone=dict(type="MobileNetV2", width_mult=0.35),
        num_classes=NUM_CLASSES,
        extra_depths=(64, 32, 32, 16),
        **kwargs,
    )


def _anchors(model: SSDLite, inputs: torch.Tensor) -> torch.Tensor:
    """The model's anchors for ``inputs``, from the feature sizes its specs promise."""
    height, width = inputs.shape[-2:]
    sizes = [(-(-height // s.stride), -(-width // s.stride)) for s in model.head.in_specs]
    return model.anchor_generator(sizes, (height, width))


# ------------------------------------------------------------------ building


def test_paper_model_parameters_and_multiply_adds_at_320() -> None:
    model = mtvision.create_model("ssdlite320_mobilenet_v2", num_classes=80)
    built = MODELS.build(
        dict(type="SSDLite", backbone=dict(type="MobileNetV2", width_mult=1.0), num_classes=80)
    )
    assert count_parameters(built) == count_parameters(model)

    # Paper Table 6: 4.3M parameters, 0.8B multiply-adds (80 classes + background).
    assert count_parameters(model) == 4_337_013
    assert count_multiply_adds(model, (1, 3, 320, 320)) == 788_830_144
    assert count_parameters(model.backbone) == 2_223_872
    assert count_multiply_adds(model.backbone, (1, 3, 320, 320)) == 611_212_800
    # Paper Table 5, "SSDLite" head = extras + predictors: 2.1M parameters (0.35B MAdds).
    assert count_parameters(model.extras) == 656_960
    assert count_parameters(model.head) == 1_456_181
    assert count_parameters(model.extras) + count_parameters(model.head) == 2_113_141
    # Their multiply-adds are the difference of the two counts above: 177,617,344.

    # Output layout: 2034 TF anchors, 81 softmax columns.
    outputs = model.eval()(torch.zeros(1, 3, 320, 320))
    assert outputs["cls_logits"].shape == (1, 2034, 81)
    assert outputs["bbox_regression"].shape == (1, 2034, 4)


def test_torchvision_anchor_variant_has_six_boxes_everywhere() -> None:
    model = _tiny_ssdlite(anchor_generator=dict(type="DefaultBoxGenerator")).eval()
    assert model.head.num_anchors == [6] * 6
    outputs = model(torch.zeros(1, 3, 64, 64))
    # Maps 4, 2, 1, 1, 1, 1 at 64x64.
    assert outputs["cls_logits"].shape == (1, 6 * (16 + 4 + 1 + 1 + 1 + 1), NUM_CLASSES + 1)


def test_batch_norm_settings_apply_to_the_whole_model() -> None:
    model = _tiny_ssdlite()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) > 40
    assert {(m.eps, m.momentum) for m in norms} == {(1e-3, 0.03)}
    custom = _tiny_ssdlite(bn_eps=1e-5, bn_momentum=0.1)
    norms = [m for m in custom.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in norms} == {(1e-5, 0.1)}


def test_head_init_is_normal_with_std_003() -> None:
    model = _tiny_ssdlite(seed=3)
    weights = torch.cat([p.flatten() for n, p in model.head.named_parameters() if "conv" in n])
    weights = torch.cat([weights, *(b[1].weight.flatten() for b in model.head.cls_predictors)])
    assert weights.std().item() == pytest.approx(0.03, rel=0.05)
    assert all(b[1].bias.detach().abs().max() == 0.0 for b in model.head.cls_predictors)


def test_channels_last_gives_the_same_outputs() -> None:
    inputs = torch.randn(2, 3, 64, 96)
    reference = _tiny_ssdlite(seed=1).eval()(inputs)
    model = _tiny_ssdlite(seed=1, channels_last=True).eval()
    assert model.head.cls_predictors[0][1].weight.is_contiguous(memory_format=torch.channels_last)
    outputs = model(inputs.contiguous(memory_format=torch.channels_last))
    for key in ("cls_logits", "bbox_regression"):
        torch.testing.assert_close(outputs[key], reference[key], atol=1e-4, rtol=1e-4)


def test_tensor_mode_exports_to_onnx(tmp_path) -> None:
    model = _tiny_ssdlite().eval()
    path = export_onnx(model, tmp_path / "ssdlite.onnx", input_shape=(1, 3, 96, 96))
    assert check_onnx_matches(model, path, torch.randn(2, 3, 96, 96)) < 1e-4


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="anchor generator has 5 layers"):
        _tiny_ssdlite(anchor_generator=dict(type="SSDAnchorGenerator", num_layers=5))
    with pytest.raises(ValueError, match="unknown test_cfg key"):
        _tiny_ssdlite(test_cfg=dict(nms_threshold=0.5))
    with pytest.raises(ValueError, match="cls_loss"):
        _tiny_ssdlite(cls_loss="sigmoid")
    with pytest.raises(ValueError, match="mode"):
        _tiny_ssdlite()(torch.zeros(1, 3, 32, 32), mode="bogus")


# ---------------------------------------------------------------------- loss


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


def _expected_softmax_loss(model, inputs, samples, neg_pos_ratio=3, min_negatives=0):
    """The SSD loss recomputed from the tensor outputs with topk-based negative mining."""
    with torch.no_grad():
        outputs = model(inputs)
    anchors = _anchors(model, inputs)
    total_cls, total_box, total_positive = 0.0, 0.0, 0
    for logits, codes, sample in zip(
        outputs["cls_logits"], outputs["bbox_regression"], samples, strict=True
    ):
        matches = model.matcher(sample["boxes"], anchors)
        positive = matches >= 0
        targets = torch.zeros(len(anchors), dtype=torch.int64)
        targets[positive] = sample["labels"][matches[positive]] + 1
        losses = F.cross_entropy(logits, targets, reduction="none")
        num_negative = max(int(neg_pos_ratio * int(positive.sum())), min_negatives)
        total_cls += losses[positive].sum() + losses[~positive].topk(num_negative).values.sum()
        encoded = model.box_coder.encode(sample["boxes"][matches[positive]], anchors[positive])
        total_box += F.smooth_l1_loss(codes[positive], encoded, reduction="sum")
        total_positive += int(positive.sum())
    normaliser = max(total_positive, 1)
    return float(total_cls) / normaliser, float(total_box) / normaliser, total_positive


def test_loss_without_ground_truth_is_zero_and_has_finite_gradients() -> None:
    model = _tiny_ssdlite().eval()
    inputs = torch.randn(2, 3, 64, 64)
    losses = model(inputs, _samples([], []), mode="loss")
    assert set(losses) == {"loss_cls", "loss_bbox"}
    # No positives: no box loss and, with mmdet/torchvision's 0 minimum negatives, no
    # classification loss either.
    assert losses["loss_bbox"].item() == 0.0
    assert losses["loss_cls"].item() == 0.0
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_loss_without_ground_truth_with_minimum_negatives() -> None:
    model = _tiny_ssdlite(min_negatives_per_image=3).eval()
    inputs = torch.randn(2, 3, 64, 64)
    samples = _samples([], [])
    losses = model(inputs, samples, mode="loss")
    expected_cls, expected_box, positives = _expected_softmax_loss(
        model, inputs, samples, min_negatives=3
    )
    assert positives == 0 and expected_box == 0.0
    assert losses["loss_bbox"].item() == 0.0
    # 3 hardest background anchors per image, divided by max(0, 1): about 6 * log(4).
    assert losses["loss_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
    assert 5.0 < losses["loss_cls"].item() < 12.0


def test_loss_with_one_box_matches_a_direct_computation() -> None:
    model = _tiny_ssdlite().eval()
    inputs = torch.randn(2, 3, 64, 64)
    samples = _samples([[8.0, 10.0, 40.0, 50.0]], [])
    losses = model(inputs, samples, mode="loss")
    expected_cls, expected_box, positives = _expected_softmax_loss(model, inputs, samples)
    assert positives >= 1
    assert losses["loss_bbox"].item() > 0.0
    assert losses["loss_cls"].item() > 0.0
    assert losses["loss_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(expected_box, rel=1e-5)
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    box_grads = [block[1].weight.grad.abs().sum() for block in model.head.bbox_predictors]
    assert sum(box_grads) > 0


def test_focal_loss_variant() -> None:
    model = _tiny_ssdlite(cls_loss="focal").eval()
    inputs = torch.randn(2, 3, 64, 64)
    outputs = model(inputs)
    assert outputs["cls_logits"].shape[-1] == NUM_CLASSES  # no background column

    empty = model(inputs, _samples([], []), mode="loss")
    assert empty["loss_bbox"].item() == 0.0
    expected_empty = sigmoid_focal_loss(
        outputs["cls_logits"], torch.zeros_like(outputs["cls_logits"]), reduction="sum"
    )
    assert empty["loss_cls"].item() == pytest.approx(expected_empty.item(), rel=1e-5)

    samples = _samples([[8.0, 10.0, 40.0, 50.0]], [])
    losses = model(inputs, samples, mode="loss")
    matches = model.matcher(samples[0]["boxes"], _anchors(model, inputs))
    targets = torch.zeros_like(outputs["cls_logits"])
    targets[0, matches >= 0, 2] = 1.0
    expected = sigmoid_focal_loss(outputs["cls_logits"], targets, reduction="sum")
    num_positive = int((matches >= 0).sum())
    assert losses["loss_cls"].item() == pytest.approx(expected.item() / num_positive, rel=1e-5)
    assert losses["loss_bbox"].item() > 0.0


def test_bad_targets_name_the_image_and_the_box() -> None:
    model = _tiny_ssdlite().eval()
    inputs = torch.randn(1, 3, 64, 64)
    samples = _samples([[0.0, 0.0, 10.0, 10.0]])
    samples[0]["labels"] = torch.tensor([NUM_CLASSES])
    with pytest.raises(ValueError, match=r"image0.jpg: box 0 has label 3, outside 0..2"):
        model(inputs, samples, mode="loss")
    samples = _samples([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 20.0]])
    with pytest.raises(ValueError, match=r"image0.jpg: box 1 .* positive width and height"):
        model(inputs, samples, mode="loss")
    with pytest.raises(ValueError, match="needs 'boxes' and 'labels'"):
        model(inputs, [{"meta": {"img_path": "a.jpg"}}], mode="loss")
    with pytest.raises(ValueError, match="one data sample per image"):
        model(inputs, None, mode="loss")


# -------------------------------------------------------------- predictions


def _scripted_outputs(model, anchors, detections):
    """Head outputs that score ``(anchor, class, logit, box)`` detections and nothing else."""
    num_anchors = len(anchors)
    cls_logits = torch.zeros(1, num_anchors, NUM_CLASSES + 1)
    cls_logits[0, :, 0] = 10.0  # background everywhere: foreground scores ~5e-5
    codes = torch.zeros(1, num_anchors, 4)
    for anchor, label, logit, box in detections:
        cls_logits[0, anchor, 0] = 0.0
        cls_logits[0, anchor, label + 1] = logit
        codes[0, anchor] = model.box_coder.encode(torch.tensor(box), anchors[anchor])
    return {"cls_logits": cls_logits, "bbox_regression": codes}


def test_predict_maps_boxes_to_the_original_image() -> None:
    model = _tiny_ssdlite().eval()
    input_size = (64, 64)  # padded batch
    anchors = _anchors(model, torch.zeros(1, 3, *input_size))
    # The image fills 48 x 60 of the input and was 96 x 30 before resizing:
    # y scales by 2, x by 0.5.
    meta = {"img_path": "a.jpg", "img_shape": (48, 60), "ori_shape": (96, 30), "img_id": 7}
    detections = [
        (5, 2, 10.0, [10.0, 12.0, 40.0, 30.0]),
        (40, 0, 8.0, [50.0, 40.0, 70.0, 60.0]),  # crosses the image border: clipped
        (41, 2, 6.0, [11.0, 12.0, 41.0, 31.0]),  # IoU > 0.6 with the first, same class
        (42, 1, 5.0, [10.0, 12.0, 40.0, 30.0]),  # same box, other class: kept
    ]
    outputs = _scripted_outputs(model, anchors, detections)
    (prediction,) = model.predict(outputs, anchors, input_size, [{"meta": meta}])

    assert prediction["meta"] is meta
    assert prediction["boxes"].dtype == torch.float32 and prediction["boxes"].shape == (3, 4)
    assert prediction["scores"].dtype == torch.float32
    assert prediction["labels"].dtype == torch.int64
    assert prediction["labels"].tolist() == [2, 0, 1]
    expected_boxes = [[5.0, 24.0, 20.0, 60.0], [25.0, 80.0, 30.0, 96.0], [5.0, 24.0, 20.0, 60.0]]
    torch.testing.assert_close(prediction["boxes"], torch.tensor(expected_boxes), atol=1e-3, rtol=0)
    expected_scores = [torch.tensor([0.0, 0.0, 0.0, logit]).softmax(0)[-1] for logit in (10, 8, 5)]
    torch.testing.assert_close(prediction["scores"], torch.stack(expected_scores))

    few = _tiny_ssdlite(test_cfg=dict(max_detections=2, score_threshold=0.5)).eval()
    (prediction,) = few.predict(outputs, anchors, input_size, [{"meta": meta}])
    assert prediction["labels"].tolist() == [2, 0]


def test_predict_through_forward_keeps_the_contract() -> None:
    model = _tiny_ssdlite().eval()
    metas = [
        {"img_path": "a.jpg", "img_shape": (64, 64), "ori_shape": (128, 100)},
        {"img_path": "b.jpg", "img_shape": (48, 64), "ori_shape": (48, 64)},
    ]
    predictions = model(torch.randn(2, 3, 64, 64), [{"meta": m} for m in metas], mode="predict")
    assert len(predictions) == 2
    for prediction, meta in zip(predictions, metas, strict=True):
        assert set(prediction) == {"boxes", "scores", "labels", "meta"}
        assert prediction["meta"] is meta
        boxes = prediction["boxes"]
        assert 0 < len(boxes) <= 100
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
        height, width = meta["ori_shape"]
        assert boxes[:, 0::2].min() >= 0 and boxes[:, 0::2].max() <= width
        assert boxes[:, 1::2].min() >= 0 and boxes[:, 1::2].max() <= height
        assert (prediction["scores"] > 0.01).all()
        assert prediction["labels"].min() >= 0 and prediction["labels"].max() < NUM_CLASSES
    (bare,) = model(torch.randn(1, 3, 64, 64), mode="predict")
    assert "meta" not in bare and bare["boxes"].max() <= 64


# ------------------------------------------------------------------ learning


def test_overfits_one_image_with_one_box() -> None:
    model = _tiny_ssdlite(seed=0)
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    image = torch.full((3, 96, 96), 30, dtype=torch.uint8)
    image[:, 30:70, 20:80] = torch.tensor([220, 40, 40], dtype=torch.uint8).view(3, 1, 1)
    box = torch.tensor([[20.0, 30.0, 80.0, 70.0]])
    sample = {
        "boxes": box,
        "labels": torch.tensor([1]),
        "meta": {"img_path": "one.jpg", "img_shape": (96, 96), "ori_shape": (96, 96)},
    }
    # Two copies: BatchNorm in training needs more than one value on the 1x1 maps.
    batch = {"inputs": [image, image.clone()], "data_samples": [sample, dict(sample)]}
    history = []
    for _ in range(30):
        losses = model.train_step(batch, optim_wrapper)
        history.append(losses["loss_cls"].item() + losses["loss_bbox"].item())
    # Measured: 10.4 -> 3.0 (seed 0); an untrained model has top scores ~0.25.
    assert history[-1] < 0.4 * history[0]
    model.eval()
    prediction = model.val_step(batch)[0]
    assert prediction["labels"][0].item() == 1
    assert prediction["scores"][0].item() > 0.5
    assert box_iou(prediction["boxes"][:1], box).item() > 0.5
