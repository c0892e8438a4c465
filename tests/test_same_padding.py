"""TF "SAME" padding: the rule, ConvNormAct and MobileNetV2 with it, and its ONNX export."""

import pytest
import torch
import torch.nn.functional as F

import mtvision
from mtvision.backbones import MobileNetV2
from mtvision.export.onnx_export import check_onnx_matches, export_onnx
from mtvision.layers import ConvNormAct
from mtvision.layers.same_padding import SamePad2d, same_padding
from mtvision.utils.parity import randomize_batch_norms_


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation", "expected"),
    [
        (224, 3, 2, 1, (0, 1)),  # even input, stride 2: the extra row goes after
        (225, 3, 2, 1, (1, 1)),  # odd input: symmetric, as PyTorch's padding=1
        (513, 3, 2, 1, (1, 1)),
        (7, 1, 2, 1, (0, 0)),
        (33, 3, 1, 2, (2, 2)),  # stride 1: symmetric dilation * (k - 1) / 2
        (6, 2, 1, 1, (0, 1)),  # even kernel: odd total, extra after
        (10, 5, 4, 1, (1, 2)),
    ],
)
def test_same_padding_follows_tensorflow(size, kernel, stride, dilation, expected):
    assert same_padding(size, kernel, stride, dilation) == expected
    before, after = expected
    # TF's output size: ceil(size / stride).
    effective = (kernel - 1) * dilation + 1
    assert (size + before + after - effective) // stride + 1 == -(-size // stride)


@pytest.mark.parametrize("size", [(16, 16), (15, 17)])
def test_conv_norm_act_same_pads_after_on_even_inputs(size):
    torch.manual_seed(0)
    same = ConvNormAct(4, 6, kernel_size=3, stride=2, padding="same").eval()
    symmetric = ConvNormAct(4, 6, kernel_size=3, stride=2).eval()
    symmetric.load_state_dict(same.state_dict())  # same parameters, same keys
    x = torch.randn(2, 4, *size)

    expected_pad = [p for axis in (size[1], size[0]) for p in same_padding(axis, 3, 2)]
    reference = F.conv2d(F.pad(x, expected_pad), same.conv.weight, stride=2)
    reference = same.act(same.bn(reference))
    out = same(x)
    assert out.shape == (2, 6, -(-size[0] // 2), -(-size[1] // 2))
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    if size == (16, 16):
        assert not torch.allclose(out, symmetric(x))  # PyTorch samples one pixel up-left
    else:
        torch.testing.assert_close(out, symmetric(x), rtol=0, atol=0)


def test_default_padding_is_unchanged_and_stride_one_needs_no_pad_module():
    default = ConvNormAct(8, 8, kernel_size=3, stride=2)
    assert default.pad is None and default.conv.padding == (1, 1)
    stride_one = ConvNormAct(8, 8, kernel_size=3, dilation=2, groups=8, padding="same")
    assert stride_one.pad is None and stride_one.conv.padding == (2, 2)
    strided = ConvNormAct(8, 8, kernel_size=3, stride=2, padding="same")
    assert isinstance(strided.pad, SamePad2d) and strided.conv.padding == (0, 0)
    with pytest.raises(ValueError, match="padding must be one of"):
        ConvNormAct(8, 8, padding="valid")

    same, symmetric = MobileNetV2(padding="same"), MobileNetV2()
    assert same.state_dict().keys() == symmetric.state_dict().keys()
    padded = [name for name, m in same.named_modules() if isinstance(m, SamePad2d)]
    # The stem and the four stride-2 depthwise convs, as in the paper's Table 2.
    assert padded == [
        "stem.pad",
        "stage2.0.depthwise.pad",
        "stage3.0.depthwise.pad",
        "stage4.0.depthwise.pad",
        "stage6.0.depthwise.pad",
    ]
    segmentor = mtvision.create_model("deeplabv3_mobilenet_v2", padding="same")
    assert segmentor.backbone.padding == "same"
    # SSDLite: the backbone's five and the extra layers' four stride-2 depthwise convs.
    detector = mtvision.create_model(
        "ssdlite320_mobilenet_v2", num_classes=2, width_mult=0.35, padding="same"
    )
    padded = [name for name, m in detector.named_modules() if isinstance(m, SamePad2d)]
    assert len(padded) == 5 + 4
    assert padded[-1] == "heads.detection.extras.blocks.3.1.pad"
    with torch.no_grad():
        outputs = detector.eval()(torch.zeros(1, 3, 320, 320))["detection"]
    assert outputs["cls_logits"].shape == (1, 2034, 3)  # maps 20, 10, 5, 3, 2, 1 as before


def test_same_padding_exports_to_onnx(tmp_path):
    # Even height, odd width: the traced pads are asymmetric on one axis only.
    size = (66, 47)
    taps = ("stage2", "stage4")
    backbone = randomize_batch_norms_(
        MobileNetV2(width_mult=0.35, padding="same", out_features=taps), seed=0, input_size=64
    ).eval()
    path = export_onnx(backbone, tmp_path / "same.onnx", input_shape=(1, 3, *size))
    inputs = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = backbone(inputs)
        symmetric = MobileNetV2(width_mult=0.35, out_features=taps).eval()
        symmetric.load_state_dict(backbone.state_dict())
        differs = not torch.allclose(symmetric(inputs)["stage4"], outputs["stage4"])
    scale = max(float(t.abs().max()) for t in outputs.values())
    assert scale > 0.1
    assert check_onnx_matches(backbone, path, inputs) <= 1e-4 * scale
    assert differs  # the exported graph pads as TF does, not as PyTorch's default
