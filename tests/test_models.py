"""Contract tests over every named model (``mtvision.list_models()``) and every head class
registered in ``mtvision.registry.MODELS``, as timm's ``tests/test_models.py`` does for its
models: build, backbone taps, raw forward, loss, predict and the deployed ONNX graph.

The cases come from the live lists, never from a copy of them:

- ``model:<name>``: ``mtvision.create_model(name, **tiny settings)``;
- ``head:<Class>``: the head alone in a ``MultiTaskModel`` under the name ``"boxes"``
  (a head's name says nothing about its kind);
- ``heads:every-head-twice``: every registered head twice in one model, the first copy
  named after another kind's task, the second ``extra<i>``.

What a test knows about a head comes from its kind (``head.task``, a string today, an
object with ``.name`` after the task adapters): :data:`KINDS` holds one contract per
kind, read from the heads' docstrings. A head of a new kind fails here until its
contract is written down.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass

import pytest
import torch

import mtvision
from mtvision.export import (
    DeployModel,
    OnnxRuntimeModel,
    deploy_metadata,
    export_deploy_onnx,
    read_deploy_metadata,
)
from mtvision.models import MultiTaskModel
from mtvision.registry import MODELS
from mtvision.tasks import task_of
from mtvision.utils.parity import randomize_batch_norms_

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

# Not square, so a swapped height and width shows; small enough for full-width models.
INPUT_SIZE = (64, 96)
# The original image the test pipeline resized from: other size, other aspect ratio.
ORIGINAL_SIZE = (120, 80)
CALIBRATION_SIZE = 192  # square images the BatchNorm statistics are measured on


def _registered_heads() -> dict[str, type]:
    """Registry name -> class of every head in mtvision's MODELS (a class with a ``task``
    and the taps it reads); classes registered by test modules are left out."""
    MODELS.import_from_location()
    return {
        name: cls
        for name, cls in sorted(MODELS.module_dict.items())
        if isinstance(cls, type)
        and cls.__module__.startswith("mtvision.")
        and getattr(cls, "task", None) is not None
        and hasattr(cls, "in_features")
    }


HEADS = _registered_heads()
MODEL_NAMES = mtvision.list_models()


def task_name(head) -> str:
    """The kind of a head (or head class): ``head.task`` or its ``name``."""
    task = head.task
    return getattr(task, "name", task)


# --------------------------------------------------------------------- kinds of heads


def _classification_target(num_classes, size):
    return {"label": num_classes - 1}


def _detection_target(num_classes, size):
    height, width = size
    box = [0.1 * width, 0.125 * height, 0.55 * width, 0.6 * height]  # xyxy input pixels
    return {
        "boxes": torch.tensor([box], dtype=torch.float32),
        "labels": torch.tensor([num_classes - 1], dtype=torch.int64),
    }


def _segmentation_target(num_classes, size):
    height, width = size
    mask = torch.zeros(size, dtype=torch.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = num_classes - 1
    mask[:2] = 255  # ignore_index
    return {"mask": mask}


def _check_classification_outputs(head, outputs, batch, size, specs):
    assert set(outputs) == {"cls_logits"}
    assert outputs["cls_logits"].shape == (batch, head.num_classes)


def _check_detection_outputs(head, outputs, batch, size, specs):
    assert set(outputs) == {"cls_logits", "bbox_regression"}
    anchors = head.anchors(size)
    num_anchors = anchors.shape[0]
    assert anchors.shape == (num_anchors, 4) and num_anchors > 0
    # Softmax scoring: a background logit before the C class logits.
    assert outputs["cls_logits"].shape == (batch, num_anchors, head.num_classes + 1)
    assert outputs["bbox_regression"].shape == (batch, num_anchors, 4)


def _check_segmentation_outputs(head, outputs, batch, size, specs):
    assert set(outputs) == {"seg_logits"}
    (tap,) = head.in_features
    stride = specs[tap].stride
    expected = (batch, head.num_classes, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert outputs["seg_logits"].shape == expected


def _check_classification_prediction(head, prediction, sample, original_size):
    score, label = prediction["pred_score"], prediction["pred_label"]
    assert score.shape == (head.num_classes,) and score.dtype == torch.float32
    assert float(score.sum()) == pytest.approx(1.0, abs=1e-5) and float(score.min()) >= 0
    assert isinstance(label, int) and label == int(score.argmax())
    assert prediction["gt_label"] == sample["label"]


def _check_detection_prediction(head, prediction, sample, original_size):
    boxes, scores, labels = prediction["boxes"], prediction["scores"], prediction["labels"]
    count = len(scores)
    assert count > 0, "no detections: nothing to check the boxes of"
    assert boxes.shape == (count, 4) and boxes.dtype == torch.float32
    assert scores.shape == (count,) and scores.dtype == torch.float32
    assert labels.shape == (count,) and labels.dtype == torch.int64
    assert ((labels >= 0) & (labels < head.num_classes)).all()
    assert (scores[:-1] >= scores[1:]).all() and ((scores > 0) & (scores <= 1)).all()
    height, width = original_size
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    # In original pixels, not input pixels: some box reaches past the input's height.
    assert float(boxes[:, 3].max()) > INPUT_SIZE[0]


def _check_segmentation_prediction(head, prediction, sample, original_size):
    mask = prediction["pred_mask"]
    assert mask.shape == original_size and mask.dtype == torch.int64
    assert ((mask >= 0) & (mask < head.num_classes)).all()
    assert prediction["gt_mask"] is sample["mask"]


def _same_classification(expected, actual, topk=5):
    k = min(topk, len(expected["pred_score"]))
    want, got = expected["pred_score"].topk(k), actual["pred_score"].topk(k)
    assert torch.equal(want.indices, got.indices)
    assert torch.allclose(want.values, got.values, atol=1e-5)
    assert expected["pred_label"] == actual["pred_label"]


def _same_detections(expected, actual, box_tolerance=1e-3, score_tolerance=1e-4):
    assert len(expected["scores"]) == len(actual["scores"]) > 0
    # Near-equal scores at the end of the list are a tie at the cut (max_detections, or
    # NMS ordering): compare the detections scoring clearly above the last one.
    cut = float(expected["scores"].min()) + score_tolerance
    keep = expected["scores"] > cut
    for box, score, label in zip(
        expected["boxes"][keep], expected["scores"][keep], expected["labels"][keep], strict=True
    ):
        same = (
            (actual["labels"] == label)
            & ((actual["boxes"] - box).abs().amax(dim=1) <= box_tolerance)
            & ((actual["scores"] - score).abs() <= score_tolerance)
        )
        assert same.any(), f"torch detection {box.tolist()} {float(score):.5f} {int(label)} missing"


def _same_masks(expected, actual):
    assert expected["pred_mask"].shape == actual["pred_mask"].shape
    agreement = (expected["pred_mask"] == actual["pred_mask"]).double().mean()
    assert float(agreement) >= 0.999


@dataclass(frozen=True)
class Kind:
    """What the tests know about one kind of head (see each head's docstring)."""

    num_classes: int  # for the heads the tests build themselves
    annotation: tuple[str, ...]  # the data sample keys its loss reads
    target: object  # (num_classes, (H, W)) -> one sample's annotation
    check_outputs: object  # (head, outputs, N, (H, W), specs by name)
    loss_keys: tuple[str, ...]
    check_prediction: object  # (head, prediction, sample, original (H, W))
    prediction_keys: frozenset
    same_results: object  # (torch prediction, onnxruntime prediction)


KINDS = {
    "classification": Kind(
        7,
        ("label",),
        _classification_target,
        _check_classification_outputs,
        ("loss_cls",),
        _check_classification_prediction,
        frozenset({"pred_score", "pred_label", "gt_label"}),
        _same_classification,
    ),
    "detection": Kind(
        3,
        ("boxes", "labels"),
        _detection_target,
        _check_detection_outputs,
        ("loss_cls", "loss_bbox"),
        _check_detection_prediction,
        frozenset({"boxes", "scores", "labels"}),
        _same_detections,
    ),
    "segmentation": Kind(
        4,
        ("mask",),
        _segmentation_target,
        _check_segmentation_outputs,
        ("loss_seg",),
        _check_segmentation_prediction,
        frozenset({"pred_mask", "gt_mask"}),
        _same_masks,
    ),
}


def kind_of(head) -> Kind:
    name = task_name(head)
    if name not in KINDS:
        pytest.fail(f"{type(head).__name__}: no contract for task {name!r}; add one to KINDS")
    return KINDS[name]


# --------------------------------------------------------------------------- cases

# The smallest settings of each named model (few classes; width 0.35 where the width is
# an argument). A model not listed is built with ``DEFAULT_SETTINGS``.
TINY_SETTINGS = {
    "ssdlite320_mobilenet_v2": dict(num_classes=3, width_mult=0.35),
    "deeplabv3_mobilenet_v2": dict(num_classes=4, width_mult=0.35),
    "mobilenet_v2_multitask": dict(
        num_classes=dict(classification=7, detection=3, segmentation=4), width_mult=0.35
    ),
}
DEFAULT_SETTINGS = dict(num_classes=7)  # the classifiers: their width is in their name

TINY_BACKBONE = dict(type="MobileNetV2", width_mult=0.35, output_stride=16)


def _head_config(registry_name: str) -> dict:
    return dict(type=registry_name, num_classes=kind_of(HEADS[registry_name]).num_classes)


def _every_head_twice() -> dict[str, dict]:
    names = list(HEADS)
    tasks = [task_name(HEADS[name]) for name in names]
    heads = {}
    for index, name in enumerate(names):
        others = [task for task in tasks if task != tasks[index]]
        misleading = others[index % len(others)] if others else "boxes"
        heads[misleading if misleading not in heads else f"{misleading}{index}"] = _head_config(
            name
        )
        heads[f"extra{index}"] = _head_config(name)
    return heads


CASES = (
    [f"model:{name}" for name in MODEL_NAMES]
    + [f"head:{name}" for name in HEADS]
    + ["heads:every-head-twice"]
)


def build_case(case: str) -> MultiTaskModel:
    kind, _, name = case.partition(":")
    torch.manual_seed(0)
    if kind == "model":
        model = mtvision.create_model(name, **TINY_SETTINGS.get(name, DEFAULT_SETTINGS))
    elif kind == "head":
        model = MultiTaskModel(backbone=TINY_BACKBONE, heads={"boxes": _head_config(name)})
    else:
        model = MultiTaskModel(backbone=TINY_BACKBONE, heads=_every_head_twice())
    # Real BatchNorm statistics: fresh ones give near-constant outputs, which any wrong
    # export would match. Measured at 192 px, not the test's 64: on 64 px images the last
    # SSDLite maps are 1x1 and some variances come out near 0, a gain of ~450 that turns
    # float32 rounding into 3e-3 px box differences between torch and onnxruntime.
    return randomize_batch_norms_(model, seed=0, input_size=CALIBRATION_SIZE)


@pytest.fixture(scope="module", params=CASES)
def model(request) -> MultiTaskModel:
    """The case's model, built once per module, in eval mode; tests that train copy it."""
    return build_case(request.param)


def _inputs(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A normalised-looking (N, 3, H, W) float batch for ``tensor`` and ``loss`` mode."""
    return torch.randn(batch, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(seed))


def _images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random uint8 RGB (N, 3, H, W) images for ``predict`` and the deployed graph."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, *INPUT_SIZE), dtype=torch.uint8, generator=generator)


def _annotations(model, without: str | None = None) -> dict:
    """One sample's annotations for every head kind of ``model`` except ``without``."""
    sample = {}
    for head in model.heads.values():
        if task_name(head) != without:
            sample.update(kind_of(head).target(head.num_classes, INPUT_SIZE))
    return sample


def _loss(model, inputs, samples) -> dict[str, torch.Tensor]:
    return model(inputs, samples, mode="loss")


def _head_losses(losses: dict, name: str) -> dict[str, torch.Tensor]:
    prefix = f"{name}."
    return {k.removeprefix(prefix): v for k, v in losses.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------- tests


def test_the_lists_are_live():
    """The parametrisation reads the live lists, and the named models' heads are all
    registered heads (so each of them has its own ``head:`` case)."""
    assert MODEL_NAMES == sorted(MODEL_NAMES) and MODEL_NAMES
    assert HEADS, "no head found in mtvision's MODELS registry"
    for name in MODEL_NAMES:
        assert f"model:{name}" in CASES
    registered = set(HEADS.values())
    for name, settings in TINY_SETTINGS.items():
        assert name in MODEL_NAMES, f"TINY_SETTINGS names {name!r}, not a model any more"
        built = mtvision.create_model(name, **settings)
        assert {type(head) for head in built.heads.values()} <= registered


def test_backbone_returns_exactly_the_heads_taps_as_feature_info_says(model):
    specs = {spec.name: spec for spec in model.backbone.feature_info}
    assert len(specs) == len(model.backbone.feature_info), "tap names must be unique"
    strides = [spec.stride for spec in model.backbone.feature_info]
    assert strides == sorted(strides), "tap strides must never decrease"
    wanted = {tap for head in model.heads.values() for tap in head.in_features}
    with torch.no_grad():
        features = model.backbone(_inputs())
    assert set(features) == wanted
    height, width = INPUT_SIZE
    for name, feature in features.items():
        channels, stride = specs[name].channels, specs[name].stride
        expected = (2, channels, math.ceil(height / stride), math.ceil(width / stride))
        assert tuple(feature.shape) == expected, name


def test_tensor_mode_gives_each_heads_raw_outputs(model):
    specs = {spec.name: spec for spec in model.backbone.feature_info}
    with torch.no_grad():
        outputs = model(_inputs(), mode="tensor")
    assert list(outputs) == list(model.heads)
    for name, head in model.heads.items():
        kind_of(head).check_outputs(head, outputs[name], 2, INPUT_SIZE, specs)
        for output in outputs[name].values():
            assert torch.isfinite(output).all(), name


def test_loss_with_one_ground_truth_per_head_is_positive_and_finite(model):
    model = copy.deepcopy(model).train()
    losses = _loss(model, _inputs(), [_annotations(model), _annotations(model)])
    expected = {
        f"{name}.{key}" for name, head in model.heads.items() for key in kind_of(head).loss_keys
    }
    assert set(losses) == expected
    for key, value in losses.items():
        value = value.detach()
        assert value.shape == () and torch.isfinite(value), key
        assert float(value) > 0, key
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_loss_without_ground_truth_is_an_exact_zero_that_reaches_the_heads(model):
    """No annotation for one kind of head (and then for none): the losses of the heads of
    that kind are an exact 0 whose backward still gives every parameter of theirs a
    gradient (a zero one, when other heads have a loss); the other heads' losses are
    positive."""
    kinds = sorted({task_name(head) for head in model.heads.values()})
    for without in [*kinds, None]:
        trained = copy.deepcopy(model).train()
        sample = {} if without is None else _annotations(trained, without=without)
        losses = _loss(trained, _inputs(), [dict(sample), dict(sample)])
        unlabelled = [
            name for name, head in trained.heads.items() if without in (None, task_name(head))
        ]
        for name, head in trained.heads.items():
            head_losses = _head_losses(losses, name)
            assert set(head_losses) == set(kind_of(head).loss_keys), name
            for key, value in head_losses.items():
                value = value.detach()
                assert value.shape == () and torch.isfinite(value), f"{name}.{key}"
                if name in unlabelled:
                    assert float(value) == 0.0, f"no {without}: {name}.{key} = {float(value)}"
                else:
                    assert float(value) > 0, f"no {without}: {name}.{key}"
        sum(losses.values()).backward()
        for name in unlabelled:
            for parameter_name, parameter in trained.heads[name].named_parameters():
                assert parameter.grad is not None, f"{name}.{parameter_name} has no gradient"
                if without is not None:  # reached only through the exact-0 loss
                    assert not parameter.grad.any(), f"{name}.{parameter_name}"
        if without is None:
            assert all(p.grad is not None for p in trained.backbone.parameters())


def test_a_sample_without_annotations_does_not_change_the_loss(model):
    """Samples without a head's annotation give that head no loss: a batch of one labelled
    and one unlabelled image has the labelled image's losses (eval mode, so BatchNorm
    does not mix the images)."""
    model = copy.deepcopy(model).eval()
    inputs = _inputs()
    with torch.no_grad():
        mixed = _loss(model, inputs, [_annotations(model), {}])
        alone = _loss(model, inputs[:1], [_annotations(model)])
    assert set(mixed) == set(alone)
    for key in alone:
        assert float(mixed[key]) == pytest.approx(float(alone[key]), rel=1e-4, abs=1e-6), key


def test_predict_gives_one_result_per_image_in_original_pixels(model):
    images = _images()
    meta = {"img_shape": INPUT_SIZE, "ori_shape": ORIGINAL_SIZE, "img_path": "a.jpg"}
    samples = [{**_annotations(model), "meta": dict(meta)} for _ in images]
    for name, head in model.heads.items():
        kind = kind_of(head)
        with model.active_heads([name]), torch.no_grad():
            predictions = model.test_step({"inputs": list(images), "data_samples": samples})
        assert len(predictions) == len(images)
        for prediction, sample in zip(predictions, samples, strict=True):
            assert set(prediction) == kind.prediction_keys | {"meta"}, name
            assert prediction["meta"] == sample["meta"]
            kind.check_prediction(head, prediction, sample, ORIGINAL_SIZE)
    if len({kind_of(head) for head in model.heads.values()}) == len(model.heads):
        # Heads of different kinds predict together, their fields merged.
        with torch.no_grad():
            merged = model.test_step({"inputs": list(images), "data_samples": samples})
        fields = {key for head in model.heads.values() for key in kind_of(head).prediction_keys}
        assert all(set(prediction) == fields | {"meta"} for prediction in merged)


def test_deployed_onnx_gives_the_torch_results(model, tmp_path):
    classes = {
        name: [f"{name}_class{i}" for i in range(head.num_classes)]
        for name, head in model.heads.items()
    }
    path = export_deploy_onnx(model, tmp_path / "model.onnx", INPUT_SIZE, classes=classes)
    metadata = read_deploy_metadata(path)
    assert list(metadata["heads"]) == list(model.heads)
    for name, head in model.heads.items():
        info = metadata["heads"][name]
        assert info["task"] == task_name(head) and info["classes"] == classes[name]
        assert info["num_classes"] == head.num_classes

    image = _images(batch=1, seed=1)
    samples = [{"meta": {"img_shape": INPUT_SIZE, "ori_shape": INPUT_SIZE}}]
    deployed = OnnxRuntimeModel(path, threads=1)
    for name, head in model.heads.items():
        with model.active_heads([name]), torch.no_grad():
            (expected,) = model.test_step({"inputs": list(image), "data_samples": samples})
        with deployed.active_heads([name]):
            (actual,) = deployed.predict(list(image), samples)
        assert set(actual) == set(expected), name
        kind_of(head).same_results(expected, actual)


def test_phone_graph_finished_outside_gives_the_deployed_graphs_outputs(model):
    """The phone runtimes' graph (channels-last uint8 in; probabilities, raw SSD outputs,
    class logits) finished by each task from the metadata alone equals the ONNX graph."""
    images = _images(batch=2, seed=2)
    final = DeployModel(model).eval()
    phone = DeployModel(model, phone=True, channels_last=True).eval()
    with torch.no_grad():
        want = final.outputs(images)
        raw = phone.outputs(images.permute(0, 2, 3, 1).contiguous())
        output_map = phone.output_map(images.permute(0, 2, 3, 1).contiguous())
    metadata = json.loads(json.dumps(deploy_metadata(phone, INPUT_SIZE, output_map)))
    assert metadata["input_layout"] == "NHWC"
    for name, head in model.heads.items():
        info = metadata["heads"][name]
        assert info["phone_outputs"] and set(info["outputs"]) == set(raw[name])
        task = task_of(head, name)
        got = task.finish_phone_outputs(raw[name], info, INPUT_SIZE)
        assert set(got) == set(want[name]), name
        assert task.agreement(want[name], got) == 1.0, name
