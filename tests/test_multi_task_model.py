"""MultiTaskModel: the backbone built for the union of the heads' taps and run once per batch,
weighted losses, merged predictions grouped by image shape, active heads, weight loading."""

from __future__ import annotations

import pytest
import torch
import torchvision
from mmengine.registry import init_default_scope
from torch import nn

import mtvision
import mtvision.engine  # noqa: F401  (installs mtvision's Pretrained initializer)
from mtvision.errors import CheckpointError
from mtvision.models import MultiTaskModel

CLASSIFICATION = dict(type="ClassifierHead", num_classes=3)
DETECTION = dict(type="SSDLiteHead", num_classes=2, extra_depths=(16, 16, 16, 16))
SEGMENTATION = dict(type="DeepLabV3Head", num_classes=4, channels=8)


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _model(seed: int = 0, heads=None, **kwargs) -> MultiTaskModel:
    torch.manual_seed(seed)
    heads = heads or dict(
        classification=CLASSIFICATION, detection=DETECTION, segmentation=SEGMENTATION
    )
    backbone = kwargs.pop("backbone", dict(type="MobileNetV2", width_mult=0.35))
    return MultiTaskModel(backbone=backbone, heads=heads, **kwargs)


def _count_backbone_runs(model: MultiTaskModel) -> list[tuple[int, ...]]:
    """Input shapes of every backbone call, recorded by a forward hook."""
    calls: list[tuple[int, ...]] = []
    model.backbone.register_forward_hook(
        lambda module, args, output: calls.append(tuple(args[0].shape))
    )
    return calls


def _mixed_samples() -> list[dict]:
    """Four images: all annotations, only a label, only boxes, only a mask."""
    box = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([1])}
    mask = {"mask": torch.randint(0, 4, (64, 64), generator=torch.Generator().manual_seed(0))}
    return [{"label": 2, **box, **mask}, {"label": 0}, dict(box), dict(mask)]


# ------------------------------------------------------------------ building


def test_backbone_returns_the_union_of_the_heads_taps():
    model = _model()
    assert model.backbone.out_features == ("final_conv", "layer15_expansion", "stage7")
    assert model.heads["detection"].in_features == ("layer15_expansion", "final_conv")
    # Channels come from the backbone's specs (width 0.35: 192, 1280 and 112).
    assert model.heads["classification"].fc.in_features == 1280
    assert model.heads["segmentation"].in_spec.channels == 112
    detection_only = _model(heads=dict(detection=DETECTION))
    assert detection_only.backbone.out_features == ("layer15_expansion", "final_conv")
    # A head's taps set in its config replace the class default; the backbone stops there.
    shallow = _model(heads=dict(segmentation={**SEGMENTATION, "in_features": ("stage5",)}))
    assert shallow.backbone.out_features == ("stage5",)
    assert not hasattr(shallow.backbone, "stage6")


def test_configuration_errors():
    with pytest.raises(ValueError, match="out_features follow the heads"):
        _model(backbone=dict(type="MobileNetV2", width_mult=0.35, out_features=("stage7",)))
    with pytest.raises(ValueError, match=r"loss_weights names unknown heads \['detections'\]"):
        _model(loss_weights=dict(detections=2.0))
    with pytest.raises(ValueError, match="at least one head"):
        MultiTaskModel(backbone=dict(type="MobileNetV2"), heads={})
    with pytest.raises(ValueError, match="identifiers"):
        _model(heads={"det.coco": DETECTION})
    with pytest.raises(ValueError, match="mode"):
        _model()(torch.zeros(2, 3, 32, 32), mode="bogus")


def test_batch_norm_settings_apply_to_every_norm():
    model = _model(bn_eps=1e-3, bn_momentum=0.03)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in norms} == {(1e-3, 0.03)}
    assert {(m.eps, m.momentum) for m in _model().modules() if isinstance(m, nn.BatchNorm2d)} == {
        (1e-5, 0.1)
    }


# ----------------------------------------------------------------- forward


def test_one_backbone_pass_feeds_every_head():
    model = _model().eval()
    calls = _count_backbone_runs(model)
    outputs = model(torch.randn(2, 3, 64, 64))
    assert calls == [(2, 3, 64, 64)]
    assert list(outputs) == ["classification", "detection", "segmentation"]
    assert outputs["classification"]["cls_logits"].shape == (2, 3)
    assert outputs["detection"]["cls_logits"].shape[::2] == (2, 3)
    assert outputs["segmentation"]["seg_logits"].shape == (2, 4, 2, 2)

    model.train()
    losses = model(torch.randn(4, 3, 64, 64), _mixed_samples(), mode="loss")
    assert calls[1:] == [(4, 3, 64, 64)]
    assert list(losses) == [
        "classification.loss_cls",
        "detection.loss_cls",
        "detection.loss_bbox",
        "segmentation.loss_seg",
    ]
    assert all(value.item() > 0 for value in losses.values())


def test_losses_are_weighted_per_head():
    inputs = torch.randn(4, 3, 64, 64)
    samples = _mixed_samples()
    plain = _model().eval()(inputs, samples, mode="loss")
    weights = dict(classification=0.5, detection=2.0)
    weighted = _model(loss_weights=weights).eval()(inputs, samples, mode="loss")
    for key, value in plain.items():
        factor = weights.get(key.split(".")[0], 1.0)
        assert weighted[key].item() == pytest.approx(factor * value.item(), rel=1e-6)


def test_each_head_learns_only_from_its_annotated_samples():
    model = _model().eval()
    inputs = torch.randn(4, 3, 64, 64)
    samples = _mixed_samples()
    mixed = model(inputs, samples, mode="loss")
    # The classification loss of the two labelled images equals that of a batch of only them.
    labelled = model(inputs[:2], samples[:2], mode="loss")
    assert mixed["classification.loss_cls"].item() == pytest.approx(
        labelled["classification.loss_cls"].item(), rel=1e-5
    )
    # No box annotation in the batch: an exact 0 that still reaches the head's parameters.
    no_boxes = model(inputs[[1, 3]], [samples[1], samples[3]], mode="loss")
    assert no_boxes["detection.loss_cls"].item() == 0.0
    sum(no_boxes.values()).backward()
    detection_grads = [p.grad for p in model.heads["detection"].parameters()]
    assert all(grad is not None and grad.abs().max() == 0 for grad in detection_grads)
    assert model.heads["segmentation"].classifier.weight.grad.abs().max() > 0


def test_predict_merges_the_heads_fields_per_image():
    model = _model().eval()
    samples = _mixed_samples()
    for index, sample in enumerate(samples):
        sample["meta"] = {"img_path": f"{index}.jpg", "img_shape": (64, 64), "ori_shape": (32, 48)}
    with torch.no_grad():
        predictions = model(torch.randn(4, 3, 64, 64), samples, mode="predict")
    fields = {"pred_score", "pred_label", "boxes", "scores", "labels", "pred_mask", "meta"}
    assert set(predictions[0]) == fields | {"gt_label", "gt_mask"}
    assert set(predictions[1]) == fields | {"gt_label"}
    assert set(predictions[2]) == fields
    assert set(predictions[3]) == fields | {"gt_mask"}
    for prediction, sample in zip(predictions, samples, strict=True):
        assert prediction["meta"] is sample["meta"]
        assert prediction["pred_mask"].shape == (32, 48)
        assert prediction["pred_score"].shape == (3,)
        if len(prediction["boxes"]):
            assert prediction["boxes"][:, 2].max() <= 48 and prediction["boxes"][:, 3].max() <= 32


def test_predict_runs_each_image_shape_once_without_its_padding():
    model = _model().eval()
    calls = _count_backbone_runs(model)
    inputs = torch.randn(3, 3, 64, 64)
    metas = [{"img_shape": (64, 48)}, {"img_shape": (64, 64)}, {"img_shape": (64, 48)}]
    with torch.no_grad():
        grouped = model(inputs, [{"meta": m} for m in metas], mode="predict")
        assert sorted(calls) == [(1, 3, 64, 64), (2, 3, 64, 48)]
        alone = model(inputs[2:, :, :, :48], mode="predict")[0]
    for key in ("pred_score", "scores", "pred_mask"):
        assert torch.equal(grouped[2][key], alone[key]), key
    calls.clear()
    with torch.no_grad():
        model(inputs, [{"meta": {"img_shape": (64, 64)}}] * 3, mode="predict")
    assert calls == [(3, 3, 64, 64)]
    with pytest.raises(ValueError, match=r"img_shape'\] \(70, 64\) of x.jpg exceeds"):
        model(inputs[:1], [{"meta": {"img_shape": (70, 64), "img_path": "x.jpg"}}], "predict")


def test_test_time_views_run_the_backbone_once_per_extra_view():
    segmentation = {**SEGMENTATION, "test_cfg": dict(scales=(0.5, 1.0), flip=True)}
    model = _model(heads=dict(classification=CLASSIFICATION, segmentation=segmentation)).eval()
    calls = _count_backbone_runs(model)
    with torch.no_grad():
        predictions = model(torch.randn(2, 3, 64, 48), mode="predict")
    # The plain view is shared with the classifier; (0.5, -), (0.5, flip), (1.0, flip) added.
    assert calls == [(2, 3, 64, 48), (2, 3, 32, 24), (2, 3, 32, 24), (2, 3, 64, 48)]
    assert predictions[0]["pred_mask"].shape == (64, 48)


def test_active_heads_restrict_tensor_and_predict_mode():
    model = _model().eval()
    inputs = torch.randn(2, 3, 64, 64)
    with model.active_heads(["segmentation"]) as active:
        assert active is model and model.active_head_names == ("segmentation",)
        assert list(model(inputs)) == ["segmentation"]
        with torch.no_grad():
            (prediction, _) = model(inputs, mode="predict")
        assert set(prediction) == {"pred_mask"}
        # Training uses every head whatever the selection (DDP needs every parameter).
        assert len(model(inputs, [{}, {}], mode="loss")) == 4
    assert model.active_head_names == ("classification", "detection", "segmentation")
    model.active_heads(["detection", "classification"])  # without `with`: stays selected
    assert list(model(inputs)) == ["detection", "classification"]
    model.active_heads(None)
    assert list(model(inputs)) == ["classification", "detection", "segmentation"]
    with pytest.raises(KeyError, match=r"no head named \['depth'\]"):
        model.active_heads(["depth"])
    with pytest.raises(ValueError, match="at least one"):
        model.active_heads([])


def test_two_heads_of_one_kind_predict_one_at_a_time():
    model = _model(heads=dict(coco=DETECTION, voc={**DETECTION, "num_classes": 3})).eval()
    inputs = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"head 'voc' predicts \['boxes', 'labels', 'scores'\]"):
        model(inputs, mode="predict")
    with model.active_heads(["voc"]), torch.no_grad():
        (prediction,) = model(inputs, mode="predict")
    assert prediction["labels"].max() < 3


# ------------------------------------------------------------------ weights


def _single_task_detector_checkpoint(tmp_path):
    torch.manual_seed(5)
    detector = MultiTaskModel(
        backbone=dict(type="MobileNetV2", width_mult=0.35), heads=dict(detection=DETECTION)
    )
    for parameter in detector.parameters():  # distinct from any fresh init
        parameter.data.normal_(generator=torch.Generator().manual_seed(6))
    path = tmp_path / "detector.pth"
    torch.save({"state_dict": detector.state_dict(), "meta": {}}, path)
    return detector, path


def _same(module_a: nn.Module, module_b: nn.Module) -> bool:
    state_a, state_b = module_a.state_dict(), module_b.state_dict()
    return state_a.keys() == state_b.keys() and all(
        torch.equal(value, state_b[key]) for key, value in state_a.items()
    )


def test_a_single_task_checkpoint_initialises_the_backbone_and_its_head(tmp_path):
    init_default_scope("mtvision")
    detector, path = _single_task_detector_checkpoint(tmp_path)
    # Per part: mmengine's Pretrained initialiser with the part's prefix.
    model = _model(
        backbone=dict(
            type="MobileNetV2",
            width_mult=0.35,
            init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="backbone."),
        ),
        heads=dict(
            classification=CLASSIFICATION,
            detection={
                **DETECTION,
                "init_cfg": dict(
                    type="Pretrained", checkpoint=str(path), prefix="heads.detection."
                ),
            },
        ),
    )
    untouched = {k: v.clone() for k, v in model.heads["classification"].state_dict().items()}
    assert not _same(model.heads["detection"], detector.heads["detection"])
    model.init_weights()
    assert _same(model.heads["detection"], detector.heads["detection"])
    assert _same(model.backbone, detector.backbone)
    assert all(
        torch.equal(v, untouched[k]) for k, v in model.heads["classification"].state_dict().items()
    )

    # Whole model: every key the checkpoint shares (backbone + detection head).
    whole = _model(
        heads=dict(classification=CLASSIFICATION, detection=DETECTION),
        init_cfg=dict(type="Pretrained", checkpoint=str(path)),
    )
    whole.init_weights()
    assert _same(whole.heads["detection"], detector.heads["detection"])
    assert _same(whole.backbone, detector.backbone)
    with torch.no_grad():
        inputs = torch.randn(1, 3, 64, 64)
        expected = detector.eval()(inputs)["detection"]["cls_logits"]
        assert torch.equal(whole.eval()(inputs)["detection"]["cls_logits"], expected)

    # A head of another shape (5 classes instead of 2) is refused, naming the file.
    other = _model(
        heads=dict(
            detection={
                **DETECTION,
                "num_classes": 5,
                "init_cfg": dict(
                    type="Pretrained", checkpoint=str(path), prefix="heads.detection."
                ),
            }
        )
    )
    with pytest.raises(
        CheckpointError, match=r"detector.pth .*shape mismatches: predictors.cls_predictors"
    ):
        other.init_weights()


def test_torchvision_weights_fill_the_backbone_and_the_classifier_only():
    reference = torchvision.models.mobilenet_v2(weights=None, width_mult=0.35, num_classes=3)
    model = _model(heads=dict(classification=CLASSIFICATION, segmentation=SEGMENTATION))
    model.load_torchvision_state_dict(reference.state_dict())
    assert torch.equal(model.heads["classification"].fc.weight, reference.classifier[1].weight)
    assert torch.equal(model.backbone.stem.conv.weight, reference.features[0][0].weight)
    # Without a classification head the classifier keys are absent on purpose.
    segmenter = _model(heads=dict(segmentation=SEGMENTATION))
    segmenter.load_torchvision_state_dict(reference.state_dict())
    mismatched = torchvision.models.mobilenet_v2(weights=None, width_mult=0.5).state_dict()
    with pytest.raises(ValueError, match="shape mismatches"):
        segmenter.load_torchvision_state_dict(mismatched)


def test_create_model_lists_the_single_task_models_as_one_head_models():
    for name, kwargs, head in (
        ("mobilenet_v2_035", {}, "classification"),
        ("ssdlite320_mobilenet_v2", dict(width_mult=0.35), "detection"),
        ("deeplabv3_mobilenet_v2", dict(width_mult=0.35), "segmentation"),
    ):
        model = mtvision.create_model(name, **kwargs)
        assert isinstance(model, MultiTaskModel) and list(model.heads) == [head]
