"""The named MobileNetV2 classifiers (a MultiTaskModel with one ClassifierHead): size, modes,
learning, torchvision weights."""

import pytest
import torch
import torchvision
from mmengine.optim import OptimWrapper

import mtvision
from mtvision.models import MultiTaskModel
from mtvision.utils.complexity import count_parameters
from mtvision.utils.parity import randomize_batch_norms_


def _tiny_classifier(num_classes=4, **head_kwargs) -> MultiTaskModel:
    return MultiTaskModel(
        backbone=dict(type="MobileNetV2", width_mult=0.35),
        heads=dict(
            classification=dict(type="ClassifierHead", num_classes=num_classes, **head_kwargs)
        ),
    )


def test_list_and_create_models():
    names = mtvision.list_models()
    assert "mobilenet_v2" in names and "mobilenet_v2_140" in names
    model = mtvision.create_model("mobilenet_v2")
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    assert model.backbone.out_features == ("final_conv",)
    assert list(model.heads) == ["classification"]
    with pytest.raises(KeyError, match="unknown model 'resnet50'"):
        mtvision.create_model("resnet50")


def test_modes_shapes_and_loss():
    torch.manual_seed(0)
    model = _tiny_classifier(num_classes=4, label_smoothing=0.1)
    inputs = torch.randn(3, 3, 64, 80)
    samples = [{"label": 0}, {"label": 3}, {"label": 1}]
    assert model(inputs)["classification"]["cls_logits"].shape == (3, 4)
    losses = model(inputs, samples, mode="loss")
    assert list(losses) == ["classification.loss_cls"]
    # Small logits at init (fc weights ~ N(0, 0.01)): cross-entropy near log(4).
    assert losses["classification.loss_cls"].item() == pytest.approx(
        torch.log(torch.tensor(4.0)).item(), abs=0.15
    )
    model.eval()
    predictions = model(inputs, samples, mode="predict")
    assert [p["gt_label"] for p in predictions] == [0, 3, 1]
    for p in predictions:
        assert p["pred_score"].shape == (4,)
        assert p["pred_score"].sum().item() == pytest.approx(1.0, abs=1e-5)
        assert p["pred_label"] == int(p["pred_score"].argmax())
    with pytest.raises(ValueError, match="mode"):
        model(inputs, samples, mode="bogus")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_step_reduces_loss_on_a_fixed_batch(seed):
    torch.manual_seed(seed)
    model = _tiny_classifier(num_classes=3)
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    images = [torch.randint(0, 255, (3, 48, 48), dtype=torch.uint8) for _ in range(6)]
    batch = {"inputs": images, "data_samples": [{"label": i % 3} for i in range(6)]}
    first = model.train_step(batch, optim_wrapper)["classification.loss_cls"].item()
    for _ in range(20):
        last = model.train_step(batch, optim_wrapper)["classification.loss_cls"].item()
    assert last < 0.5 * first


def test_torchvision_weights_give_torchvision_logits():
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()
    randomize_batch_norms_(reference, seed=1)
    model = mtvision.create_model("mobilenet_v2", num_classes=10).eval()
    model.load_torchvision_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, actual = reference(x), model(x)["classification"]["cls_logits"]
    # The logits depend on the input, so a miswired model could not match by accident.
    assert (expected[0] - expected[1]).abs().max() > 1e-2 * expected.abs().max()
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert count_parameters(model) == count_parameters(reference)


def test_torchvision_weights_with_wrong_head_are_refused():
    reference = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    model = mtvision.create_model("mobilenet_v2", num_classes=7)
    with pytest.raises(ValueError, match=r"classifier\.1\.weight.*\(10, 1280\).*\(7, 1280\)"):
        model.load_torchvision_state_dict(reference.state_dict())
