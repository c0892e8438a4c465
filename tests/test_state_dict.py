"""Every weight loader accepts the same inputs and gives the same one-line report:
load_torchvision_weights (backbone), MultiTaskModel.load_torchvision_state_dict,
ModelSource.build_model and init_cfg=dict(type="Pretrained") here; the Runner's
load_from in tests/test_engine_checkpoint.py."""

from collections import OrderedDict

import pytest
import torch
import torchvision
from mmengine.config import Config

import mtvision
from mtvision.backbones import MobileNetV2, load_torchvision_weights
from mtvision.engine.model_source import ModelSource
from mtvision.errors import CheckpointError
from mtvision.models import MultiTaskModel
from mtvision.utils.state_dict import (
    check_state_dict_fits,
    strip_uniform_prefixes,
    unwrap_state_dict,
)


def torchvision_weights(num_classes=1000):
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(width_mult=0.35, num_classes=num_classes).state_dict()


def wrapped(state_dict, how):
    """The ways users hand over weights; every loader must take each of them."""
    if how == "bare":
        return state_dict
    if how in ("module", "module.module", "_orig_mod"):
        prefix = {"module": "module.", "module.module": "module.module.", "_orig_mod": "_orig_mod."}
        return OrderedDict((prefix[how] + k, v) for k, v in state_dict.items())
    if how == "state_dict+ema":  # timm
        return {
            "state_dict": state_dict,
            "state_dict_ema": {k: v * 0 for k, v in state_dict.items()},
        }
    if how == "model+ema":  # torchvision's reference scripts
        return {"model": state_dict, "model_ema": {}, "optimizer": {}, "epoch": 3}
    if how == "DDP in state_dict":
        return {"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "meta": {}}
    return {how: state_dict}  # "state_dict", "model", "state_dict_ema"


WRAPPINGS = [
    "bare", "module", "module.module", "_orig_mod", "state_dict", "model", "state_dict_ema",
    "state_dict+ema", "model+ema", "DDP in state_dict",
]  # fmt: skip


@pytest.mark.parametrize("how", WRAPPINGS)
def test_backbone_torchvision_loader_accepts_every_wrapping(how):
    weights = torchvision_weights()
    model = MobileNetV2(width_mult=0.35)
    assert load_torchvision_weights(model, wrapped(weights, how)) == ([], [])
    assert torch.equal(model.stem.conv.weight, weights["features.0.0.weight"])


@pytest.mark.parametrize("how", ["bare", "module", "model"])
def test_classifier_torchvision_loader_accepts_every_wrapping(how):
    weights = torchvision_weights(num_classes=10)
    model = mtvision.create_model("mobilenet_v2_035", num_classes=10)
    model.load_torchvision_state_dict(wrapped(weights, how))
    assert torch.equal(model.heads["classification"].fc.weight, weights["classifier.1.weight"])
    assert torch.equal(model.backbone.stem.conv.weight, weights["features.0.0.weight"])


def test_two_sets_of_weights_are_refused_naming_keys_and_what_to_pass():
    weights = torchvision_weights()
    checkpoint = {"state_dict": weights, "model": weights, "epoch": 1}
    for load in (
        lambda c: load_torchvision_weights(MobileNetV2(width_mult=0.35), c),
        lambda c: unwrap_state_dict(c, "ckpt.pth"),
    ):
        with pytest.raises(CheckpointError) as error:
            load(checkpoint)
        message = str(error.value)
        assert "holds weights under 'state_dict', 'model'" in message
        assert "pass checkpoint['state_dict'] (or checkpoint['model'])" in message
        assert "\n" not in message
    assert unwrap_state_dict(checkpoint, "x", state_dict_key="model") == weights


def test_non_tensor_values_are_reported_not_used():
    weights = torchvision_weights()
    weights["features.0.0.weight"] = [1, 2, 3]  # a list where the model has a tensor
    weights["epoch"] = 7  # a stray number beside the tensors
    model = MobileNetV2(width_mult=0.35)
    with pytest.raises(CheckpointError) as error:
        load_torchvision_weights(model, weights, strict=False)
    assert "stem.conv.weight: weights a list, not a tensor vs model (16, 3, 3, 3)" in str(
        error.value
    )
    del weights["features.0.0.weight"]
    result = load_torchvision_weights(model, weights, strict=False)
    assert result.unexpected_keys == ["epoch (int)"]
    assert result.missing_keys == ["stem.conv.weight (16, 3, 3, 3)"]


def test_non_strict_load_that_matches_nothing_is_an_error():
    # An mtvision state dict handed to the torchvision loader: no key can be renamed.
    ours = MobileNetV2(width_mult=0.35).state_dict()
    with pytest.raises(
        CheckpointError,
        match=rf"not one of the model's {len(ours)} keys is in the weights \(they hold "
        r"stem.conv.weight",
    ):
        load_torchvision_weights(MobileNetV2(width_mult=0.35), ours, strict=False)
    with pytest.raises(CheckpointError, match="they hold nothing"):
        check_state_dict_fits(MobileNetV2(width_mult=0.35), {}, "empty.pth", strict=False)


def test_not_a_mapping_is_refused():
    with pytest.raises(CheckpointError, match=r"x.pth: holds a MobileNetV2, not a state dict"):
        unwrap_state_dict(MobileNetV2(width_mult=0.35), "x.pth")


def test_only_a_uniform_prefix_is_stripped_and_metadata_follows():
    mixed = OrderedDict([("module.a", 1), ("b", 2)])
    assert list(strip_uniform_prefixes(mixed)) == ["module.a", "b"]
    state = torch.nn.DataParallel(torch.nn.BatchNorm2d(2)).state_dict()
    stripped = strip_uniform_prefixes(state)
    assert list(stripped) == list(torch.nn.BatchNorm2d(2).state_dict())
    assert stripped._metadata[""]["version"] == 2


# -------------------------------------------- checkpoint files: model_source, init_cfg


def _config(**model_overrides) -> Config:
    return Config(
        dict(
            default_scope="mtvision",
            model=dict(
                type="MultiTaskModel",
                backbone=dict(type="MobileNetV2", width_mult=0.35),
                heads=dict(classification=dict(type="ClassifierHead", num_classes=3)),
                **model_overrides,
            ),
        )
    )


@pytest.mark.parametrize("how", ["bare", "state_dict", "model", "module", "DDP in state_dict"])
def test_model_source_build_model_accepts_every_wrapping(tmp_path, how):
    torch.manual_seed(1)
    reference = mtvision.registry.MODELS.build(_config().model)
    path = tmp_path / "weights.pth"
    torch.save(wrapped(reference.state_dict(), how), path)
    model = ModelSource(_config(), str(path)).build_model()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_model_source_build_model_reports_a_misfit_in_one_line(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": MobileNetV2(width_mult=0.35).state_dict()}, path)
    with pytest.raises(CheckpointError) as error:
        ModelSource(_config(), str(path)).build_model()
    message = str(error.value)
    assert message.startswith(f"{path}: the weights do not fit MultiTaskModel (0 of ")
    assert "\n" not in message


@pytest.mark.parametrize("how", ["bare", "model", "module", "DDP in state_dict"])
def test_pretrained_init_cfg_accepts_every_wrapping(tmp_path, how):
    from mmengine.registry import DefaultScope

    import mtvision.engine  # noqa: F401  (installs the Pretrained initializer)
    from mtvision.registry import MODELS

    torch.manual_seed(2)
    weights = MODELS.build(_config().model).state_dict()
    path = tmp_path / "model.pth"
    torch.save(wrapped(weights, how), path)
    cfg = _config(init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    with DefaultScope.overwrite_default_scope("mtvision"):
        model = MODELS.build(cfg.model)
        model.init_weights()
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pretrained_init_cfg_matching_nothing_is_an_error(tmp_path):
    """mmengine's own initializer only logs the missing keys and leaves the model random."""
    from mmengine.registry import DefaultScope

    from mtvision.registry import MODELS

    path = tmp_path / "other.pth"
    torch.save({"state_dict": torchvision_weights()}, path)  # torchvision names
    cfg = _config(init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    with DefaultScope.overwrite_default_scope("mtvision"):
        model = MODELS.build(cfg.model)
        with pytest.raises(CheckpointError, match=r"other.pth: the weights do not fit "
                           r"MultiTaskModel \(0 of .*not one of the model's"):  # fmt: skip
            model.init_weights()
    cfg = _config(init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="backbone."))
    with DefaultScope.overwrite_default_scope("mtvision"):
        model = MODELS.build(cfg.model)
        with pytest.raises(CheckpointError, match=r"no key starts with the prefix 'backbone.'"):
            model.init_weights()


def test_classifier_uses_the_one_report():
    model = MultiTaskModel(
        backbone=dict(type="MobileNetV2", width_mult=0.35),
        heads=dict(classification=dict(type="ClassifierHead", num_classes=7)),
    )
    with pytest.raises(CheckpointError) as error:
        model.load_torchvision_state_dict(torchvision_weights(num_classes=10))
    assert str(error.value) == (
        "torchvision mobilenet_v2 weights: the weights do not fit the classifier head "
        "(7 classes) (0 of 2 model keys match; a different architecture or config?): shape "
        "mismatches: classifier.1.weight: weights (10, 1280) vs model (7, 1280), "
        "classifier.1.bias: weights (10,) vs model (7,)"
    )
