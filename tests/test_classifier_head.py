"""ClassifierHead's contract: logits from its tap, cross-entropy over labelled samples, predictions."""

import math

import pytest
import torch
import torch.nn.functional as F

from mtvision.heads import ClassifierHead
from mtvision.layers import FeatureSpec

SPECS = [FeatureSpec("stage7", 8, 32), FeatureSpec("final_conv", 16, 32)]


def _head(num_classes: int = 4, **kwargs) -> ClassifierHead:
    torch.manual_seed(0)
    return ClassifierHead(SPECS, num_classes=num_classes, **kwargs)


def _features(batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {s.name: torch.randn(batch, s.channels, 3, 2, generator=generator) for s in SPECS}


def test_reads_its_tap_by_name_and_sizes_the_linear_layer_from_the_spec():
    head = _head()
    assert head.in_features == ("final_conv",) and head.fc.in_features == 16
    assert _head(in_features=("stage7",)).fc.in_features == 8
    features = _features(3)
    logits = head.eval()(features)["cls_logits"]
    expected = head.fc(features["final_conv"].mean(dim=(2, 3)))
    torch.testing.assert_close(logits, expected)
    with pytest.raises(KeyError, match=r"unknown feature tap\(s\) \['stage9'\]"):
        _head(in_features=("stage9",))
    with pytest.raises(ValueError, match="reads one tap"):
        _head(in_features=("stage7", "final_conv"))


def test_loss_is_cross_entropy_over_the_labelled_samples_only():
    head = _head(label_smoothing=0.1).eval()
    outputs = head(_features(3))
    outputs["cls_logits"].retain_grad()
    samples = [{"label": 2}, {"meta": {"img_path": "no_label.jpg"}}, {"label": 0}]
    loss = head.loss(outputs, samples)["loss_cls"]
    logits = outputs["cls_logits"].detach()
    expected = F.cross_entropy(logits[[0, 2]], torch.tensor([2, 0]), label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() == pytest.approx(math.log(4), abs=0.1)  # small logits at init
    loss.backward()
    assert outputs["cls_logits"].grad[1].abs().max() == 0
    assert outputs["cls_logits"].grad[0].abs().max() > 0


def test_no_labelled_sample_gives_an_exact_zero_that_reaches_every_parameter():
    head = _head().train()
    loss = head.loss(head(_features(2)), [{}, {"mask": torch.zeros(2, 2)}])["loss_cls"]
    assert loss.item() == 0.0
    loss.backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().max() == 0, name


def test_bad_labels_name_the_sample():
    head = _head()
    outputs = head(_features(2))
    with pytest.raises(ValueError, match=r"b.jpg: label 4 is outside 0..3"):
        head.loss(outputs, [{"label": 1}, {"label": 4, "meta": {"img_path": "b.jpg"}}])
    with pytest.raises(ValueError, match="one data sample per image"):
        head.loss(outputs, [{"label": 1}])


def test_predict_gives_softmax_scores_the_argmax_and_the_true_label():
    head = _head(num_classes=5).eval()
    outputs = {"cls_logits": torch.tensor([[0.0, 3.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 4.0]])}
    predictions = head.predict(outputs, [{"label": 1}, {}])
    assert [p["pred_label"] for p in predictions] == [1, 4]
    torch.testing.assert_close(predictions[0]["pred_score"], outputs["cls_logits"][0].softmax(0))
    assert predictions[0]["gt_label"] == 1 and "gt_label" not in predictions[1]
    assert set(predictions[1]) == {"pred_score", "pred_label"}
