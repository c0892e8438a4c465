"""The named multi-task model: mobilenet_v2_multitask and its config, any subset of heads,
both output strides, one forward for all heads, and a short joint training that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

import mtvision
from mtvision.engine import load_config
from mtvision.registry import MODELS

CONFIG = "configs/_base_/models/multitask_mobilenet_v2.py"


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def test_named_model_and_config_build_the_same_three_heads():
    assert "mobilenet_v2_multitask" in mtvision.list_models()
    model = mtvision.create_model("mobilenet_v2_multitask")
    # Backbone to final_conv 2,223,872 + classifier 1,281,000 + SSDLite head 2,113,141
    # + on-device DeepLab head 301,845.
    assert sum(p.numel() for p in model.parameters()) == 5_919_858
    assert list(model.heads) == ["classification", "detection", "segmentation"]
    assert model.backbone.output_stride == 32
    init_default_scope("mtvision")
    built = MODELS.build(load_config(CONFIG).model)
    assert sum(p.numel() for p in built.parameters()) == 5_919_858
    assert list(built.heads) == list(model.heads)


def test_any_subset_of_heads_and_the_output_stride_argument():
    model = mtvision.create_model(
        "mobilenet_v2_multitask",
        num_classes=dict(detection=6, segmentation=7),
        width_mult=0.35,
        output_stride=16,
    )
    assert list(model.heads) == ["detection", "segmentation"]
    assert model.backbone.output_stride == 16
    assert [spec.stride for spec in model.heads["detection"].level_specs] == [
        16,
        16,
        32,
        64,
        128,
        256,
    ]
    assert model.heads["segmentation"].in_spec.stride == 16
    with pytest.raises(ValueError, match="num_classes must map some of"):
        mtvision.create_model("mobilenet_v2_multitask", num_classes=dict(depth=3))


@pytest.mark.parametrize("output_stride", [32, 16])
def test_one_forward_returns_every_heads_outputs(output_stride):
    model = mtvision.create_model(
        "mobilenet_v2_multitask",
        num_classes=dict(classification=5, detection=6, segmentation=7),
        width_mult=0.35,
        output_stride=output_stride,
    ).eval()
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        outputs = model(torch.zeros(2, 3, 320, 320))
    assert len(calls) == 1
    maps = [20, 10, 5, 3, 2, 1] if output_stride == 32 else [20, 20, 10, 5, 3, 2]
    anchors = maps[0] ** 2 * 3 + 6 * sum(m * m for m in maps[1:])
    assert outputs["classification"]["cls_logits"].shape == (2, 5)
    assert outputs["detection"]["cls_logits"].shape == (2, anchors, 7)
    assert outputs["detection"]["bbox_regression"].shape == (2, anchors, 4)
    side = 320 // output_stride
    assert outputs["segmentation"]["seg_logits"].shape == (2, 7, side, side)


def _scene(seed: int) -> dict:
    """A 64x64 image with one red square: label 1, its box (class 0) and its mask (class 1)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (3, 64, 64), dtype=np.uint8)
    y, x = rng.integers(4, 28, 2)
    size = int(rng.integers(20, 32))
    image[:, y : y + size, x : x + size] = np.array([220, 40, 40], np.uint8)[:, None, None]
    mask = np.zeros((64, 64), np.uint8)
    mask[y : y + size, x : x + size] = 1
    box = torch.tensor([[x, y, x + size, y + size]], dtype=torch.float32)
    sample = {"label": 1, "boxes": box, "labels": torch.tensor([0]), "mask": torch.from_numpy(mask)}
    return {"image": torch.from_numpy(image), "sample": sample}


def test_joint_training_lowers_every_heads_loss():
    torch.manual_seed(0)
    model = mtvision.create_model(
        "mobilenet_v2_multitask",
        num_classes=dict(classification=2, detection=1, segmentation=2),
        width_mult=0.35,
    )
    scenes = [_scene(seed) for seed in range(4)]
    samples = [scene["sample"] for scene in scenes]
    # Mixed annotations: the first image carries everything, the others one kind each.
    samples[1] = {"label": 1}
    samples[2] = {key: samples[2][key] for key in ("boxes", "labels")}
    samples[3] = {"mask": samples[3]["mask"]}
    batch = {"inputs": [scene["image"] for scene in scenes], "data_samples": samples}
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=3e-3))
    first = model.train_step(batch, optim_wrapper)
    for _ in range(25):
        last = model.train_step(batch, optim_wrapper)
    names = [
        "classification.loss_cls",
        "detection.loss_cls",
        "detection.loss_bbox",
        "segmentation.loss_seg",
    ]
    print({name: (round(first[name].item(), 3), round(last[name].item(), 3)) for name in names})
    assert last["loss"].item() < 0.5 * first["loss"].item()
    for name in names:
        assert last[name].item() < first[name].item(), name
