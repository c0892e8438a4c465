"""MobileNetV2 inside torchvision's FasterRCNN and RetinaNet through the adapter."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from mtvision.backbones import MobileNetV2, TorchvisionBackboneAdapter

FPN_TAPS = ("stage3", "stage5", "final_conv")
# Fewer proposals and sampled boxes than torchvision's defaults keep a CPU step short.
SMALL_RPN_AND_BOX_BATCHES = dict(
    rpn_pre_nms_top_n_train=300,
    rpn_post_nms_top_n_train=150,
    rpn_pre_nms_top_n_test=300,
    rpn_post_nms_top_n_test=150,
    rpn_batch_size_per_image=64,
    box_batch_size_per_image=64,
)


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[10.0, 20.0, 90.0, 110.0], [60.0, 40.0, 150.0, 150.0]]),
            "labels": torch.tensor([1, 2]),
        },
        {"boxes": torch.tensor([[30.0, 30.0, 120.0, 100.0]]), "labels": torch.tensor([2])},
    ]


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, 160, 160, generator=generator) for _ in range(2)]


def _train_step_then_infer(detector: torch.nn.Module, watched: torch.nn.Parameter) -> None:
    detector.train()
    optimizer = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=0.01)
    before = watched.detach().clone()
    losses = detector(_images(), _targets())
    loss = sum(losses.values())
    assert all(torch.isfinite(value) for value in losses.values()), losses
    assert loss.item() > 0
    loss.backward()
    optimizer.step()
    assert not torch.equal(watched.detach(), before)

    detector.eval()
    with torch.no_grad():
        predictions = detector(_images())
    assert len(predictions) == 2
    for prediction in predictions:
        count = prediction["boxes"].shape[0]
        assert prediction["boxes"].shape == (count, 4)
        assert prediction["labels"].shape == (count,)
        assert prediction["scores"].shape == (count,)
        assert ((prediction["labels"] >= 0) & (prediction["labels"] < 3)).all()


def test_adapter_outputs_fpn_levels_with_declared_channels() -> None:
    adapter = TorchvisionBackboneAdapter(MobileNetV2(width_mult=0.5), FPN_TAPS, fpn_channels=64)
    assert adapter.out_channels == 64
    assert adapter.fpn.inner_blocks[0][0].in_channels == 16  # stage3 at width 0.5
    assert adapter.fpn.inner_blocks[2][0].in_channels == 1280  # final_conv
    with torch.no_grad():
        features = adapter.eval()(torch.zeros(1, 3, 160, 160))
    assert [(name, tuple(map.shape)) for name, map in features.items()] == [
        ("stage3", (1, 64, 20, 20)),
        ("stage5", (1, 64, 10, 10)),
        ("final_conv", (1, 64, 5, 5)),
        ("pool", (1, 64, 3, 3)),
    ]


def test_adapter_argument_errors() -> None:
    with pytest.raises(ValueError, match="exactly one map"):
        TorchvisionBackboneAdapter(MobileNetV2(), ("stage3", "final_conv"))
    with pytest.raises(ValueError, match="spatial taps"):
        TorchvisionBackboneAdapter(MobileNetV2(), ("logits",))
    with pytest.raises(ValueError, match="shallow to deep"):
        TorchvisionBackboneAdapter(MobileNetV2(), ("final_conv", "stage3"), fpn_channels=32)


def _faster_rcnn(adapter, anchor_sizes, featmap_names) -> FasterRCNN:
    """A small 3-class FasterRCNN on the adapter, 160 px inputs, one anchor size set per level."""
    return FasterRCNN(
        adapter,
        num_classes=3,
        min_size=160,
        max_size=160,
        rpn_anchor_generator=AnchorGenerator(
            sizes=anchor_sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(anchor_sizes)
        ),
        box_roi_pool=MultiScaleRoIAlign(
            featmap_names=list(featmap_names), output_size=7, sampling_ratio=2
        ),
        **SMALL_RPN_AND_BOX_BATCHES,
    )


def test_faster_rcnn_with_fpn_trains_and_infers() -> None:
    torch.manual_seed(0)
    adapter = TorchvisionBackboneAdapter(
        MobileNetV2(width_mult=0.5, frozen_stages=1), FPN_TAPS, fpn_channels=64
    )
    # One anchor size per FPN level: the taps plus LastLevelMaxPool's "pool".
    detector = _faster_rcnn(adapter, ((16,), (32,), (64,), (128,)), FPN_TAPS)
    _train_step_then_infer(detector, adapter.backbone.stage6[0].expand.conv.weight)
    assert adapter.backbone.stem.conv.weight.grad is None


def test_single_map_faster_rcnn_trains_and_infers() -> None:
    torch.manual_seed(0)
    # stage7 rather than final_conv: FasterRCNN's box head flattens C x 7 x 7 into a
    # 1024-wide linear layer, 63M weights for C = 1280.
    adapter = TorchvisionBackboneAdapter(MobileNetV2(width_mult=0.5), ("stage7",))
    assert adapter.out_channels == 160
    detector = _faster_rcnn(adapter, ((32, 64, 128),), ["stage7"])
    _train_step_then_infer(detector, adapter.backbone.stem.conv.weight)


def test_retinanet_with_fpn_trains_and_infers() -> None:
    torch.manual_seed(0)
    adapter = TorchvisionBackboneAdapter(MobileNetV2(width_mult=0.5), FPN_TAPS, fpn_channels=64)
    levels = len(FPN_TAPS) + 1
    detector = RetinaNet(
        adapter,
        num_classes=3,
        min_size=160,
        max_size=160,
        anchor_generator=AnchorGenerator(
            sizes=((16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * levels
        ),
    )
    _train_step_then_infer(detector, adapter.backbone.stage3[0].project.conv.weight)
