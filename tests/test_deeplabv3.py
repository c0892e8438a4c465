"""The named DeepLabv3 segmenter (a MultiTaskModel with one DeepLabV3Head): size against the
paper, loss on padded batches, prediction at the original size with the padding cut away,
multi-scale + flip test, torchvision weights, learning, export.

The head's own contract is tested in tests/test_deeplabv3_head.py."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from mmengine.optim import OptimWrapper
from torch.optim.swa_utils import update_bn

import mtvision
from mtvision.backbones import load_torchvision_weights
from mtvision.export.onnx_export import check_onnx_matches, export_onnx
from mtvision.models import DataPreprocessor, MultiTaskModel
from mtvision.registry import MODELS
from mtvision.utils.complexity import count_multiply_adds, count_parameters
from mtvision.utils.parity import randomize_batch_norms_

NUM_CLASSES = 5


def _tiny_segmentor(**kwargs) -> MultiTaskModel:
    return mtvision.create_model(
        "deeplabv3_mobilenet_v2", num_classes=NUM_CLASSES, width_mult=0.35, channels=32, **kwargs
    )


def _calibrated_segmentor(seed: int = 0, **kwargs) -> MultiTaskModel:
    """Random weights with real BN statistics, so predictions vary across the image."""
    torch.manual_seed(seed)
    model = _tiny_segmentor(**kwargs)
    randomize_batch_norms_(model, seed=seed, input_size=64)
    torch.nn.init.normal_(model.heads["segmentation"].classifier.weight, 0, 1.0)
    return model.eval()


def _logits(model: MultiTaskModel, inputs: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> the head's logits upsampled to (N, K, H, W), as loss and predict see them."""
    logits = model(inputs)["segmentation"]["seg_logits"]
    return F.interpolate(logits, size=inputs.shape[-2:], mode="bilinear", align_corners=False)


def _uint8_image(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


# Table 7 of the MobileNetV2 paper, 21 classes at 513x513: on-device head 2.11M params and
# 2.75B MAdds, ASPP head 4.52M and 5.8B (see docs for the comparison).
@pytest.mark.parametrize(
    ("head", "output_stride", "params", "multiply_adds"),
    [
        ("ondevice", 16, 2_113_557, 2_740_709_056),
        ("aspp", 16, 4_523_541, 5_363_508_928),
        ("ondevice", 8, 2_113_557, 8_825_853_632),
        ("aspp", 8, 4_523_541, 19_001_546_432),
    ],
)
def test_complexity_at_513(head, output_stride, params, multiply_adds):
    model = mtvision.create_model(
        "deeplabv3_mobilenet_v2", num_classes=21, head=head, output_stride=output_stride
    )
    # The backbone keeps no module after stage7 (no 1280-channel final_conv), nothing is frozen.
    assert sum(p.numel() for p in model.parameters()) == params
    assert count_parameters(model, trainable_only=True) == params
    assert not hasattr(model.backbone, "final_conv")
    assert count_multiply_adds(model, (1, 3, 513, 513)) == multiply_adds


def test_config_builds_the_same_model_as_the_factory():
    config = dict(
        type="MultiTaskModel",
        backbone=dict(type="MobileNetV2", output_stride=8, width_mult=0.5),
        heads=dict(
            segmentation=dict(
                type="DeepLabV3Head",
                num_classes=21,
                aspp=True,
                test_cfg=dict(scales=(0.5, 1.0), flip=True),
            )
        ),
    )
    built = MODELS.build(config)
    created = mtvision.create_model(
        "deeplabv3_mobilenet_v2", head="aspp", output_stride=8, width_mult=0.5
    )
    assert count_parameters(built) == count_parameters(created)
    assert built.backbone.out_features == ("stage7",)
    head = built.heads["segmentation"]
    assert head.aspp.atrous_rates == (12, 24, 36)
    assert head.test_time_views == ((0.5, False), (0.5, True), (1.0, False), (1.0, True))
    with pytest.raises(ValueError, match="head must be one of"):
        mtvision.create_model("deeplabv3_mobilenet_v2", head="psp")
    with pytest.raises(ValueError, match=r"DeepLabV3Head: unknown test_cfg key\(s\) \['mode'\]"):
        _tiny_segmentor(test_cfg=dict(mode="slide"))
    with pytest.raises(ValueError, match="scales"):
        _tiny_segmentor(test_cfg=dict(scales=(1.0, -0.5)))


def test_every_trainable_parameter_gets_a_gradient():
    # DistributedDataParallel stops on trainable parameters that get no gradient.
    torch.manual_seed(0)
    model = _tiny_segmentor(head="aspp").train()
    inputs = torch.randn(2, 3, 48, 48)
    masks = [torch.randint(0, NUM_CLASSES, (48, 48), dtype=torch.uint8) for _ in range(2)]
    model(inputs, [{"mask": m} for m in masks], mode="loss")["segmentation.loss_seg"].backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert without_grad == []
    assert all(p.requires_grad for p in model.parameters())


def test_loss_is_zero_when_every_pixel_is_ignored_and_log_k_at_init():
    torch.manual_seed(0)
    model = _tiny_segmentor().train()
    inputs = torch.randn(2, 3, 40, 40)
    ignored = [{"mask": torch.full((40, 40), 255, dtype=torch.uint8)} for _ in range(2)]
    loss = model(inputs, ignored, mode="loss")["segmentation.loss_seg"]
    assert loss.item() == 0.0
    loss.backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters() if p.grad is not None)
    labelled = [{"mask": torch.randint(0, NUM_CLASSES, (40, 40), dtype=torch.uint8)} for _ in "ab"]
    loss = model(inputs, labelled, mode="loss")["segmentation.loss_seg"]
    # Classifier weights ~ N(0, 0.01): near-uniform softmax, loss close to log(K).
    assert loss.item() == pytest.approx(math.log(NUM_CLASSES), abs=0.05)


def test_loss_pads_masks_with_ignore_and_averages_over_labelled_pixels():
    model = _calibrated_segmentor()
    images = [_uint8_image(40, 56, seed=1), _uint8_image(48, 32, seed=2)]
    generator = torch.Generator().manual_seed(3)
    masks = [
        torch.randint(0, NUM_CLASSES, image.shape[1:], dtype=torch.uint8, generator=generator)
        for image in images
    ]
    masks[0][:10] = 255
    batch = model.data_preprocessor(
        {"inputs": images, "data_samples": [{"mask": m} for m in masks]}
    )
    assert batch["inputs"].shape == (2, 3, 48, 56)
    with torch.no_grad():
        loss = model(**batch, mode="loss")["segmentation.loss_seg"]
        logits = _logits(model, batch["inputs"])
    total, count = 0.0, 0
    for index, mask in enumerate(masks):
        h, w = mask.shape
        per_pixel = F.cross_entropy(
            logits[index : index + 1, :, :h, :w],
            mask[None].long(),
            ignore_index=255,
            reduction="none",
        )
        labelled = mask[None] != 255
        total += per_pixel[labelled].sum().item()
        count += int(labelled.sum())
    assert count == 40 * 56 - 10 * 56 + 48 * 32
    assert loss.item() == pytest.approx(total / count, rel=1e-5)
    assert loss.item() > 0.5


def test_bad_masks_name_the_file():
    model = _tiny_segmentor()
    inputs = torch.randn(2, 3, 32, 32)
    good = {"mask": torch.zeros(32, 32, dtype=torch.uint8), "meta": {"seg_path": "a.png"}}
    bad = {"mask": torch.full((32, 32), 7, dtype=torch.uint8), "meta": {"seg_path": "b.png"}}
    with pytest.raises(ValueError, match=r"mask of b\.png has values \[7\]; expected .*0\.\.4"):
        model(inputs, [good, bad], mode="loss")
    too_big = {"mask": torch.zeros(40, 32, dtype=torch.uint8), "meta": {"seg_path": "c.png"}}
    with pytest.raises(ValueError, match=r"mask of c\.png has shape \(40, 32\)"):
        model(inputs, [good, too_big], mode="loss")
    with pytest.raises(ValueError, match="mode"):
        model(inputs, [good, good], mode="bogus")


def test_predict_crops_padding_before_the_network_and_resizes_to_ori_shape():
    model = _calibrated_segmentor()
    images = [_uint8_image(40, 56, seed=1), _uint8_image(64, 48, seed=2), _uint8_image(40, 56, 3)]
    metas = [
        {"img_shape": (40, 56), "ori_shape": (40, 56), "img_path": "a.jpg"},
        {"img_shape": (64, 48), "ori_shape": (96, 72), "img_path": "b.jpg"},
        {"img_shape": (40, 56), "ori_shape": (20, 28), "img_path": "c.jpg"},
    ]
    samples = [{"meta": meta} for meta in metas]
    samples[0]["mask"] = torch.zeros(40, 56, dtype=torch.uint8)
    preprocessor = DataPreprocessor()
    batch = preprocessor({"inputs": images, "data_samples": samples})
    assert batch["inputs"].shape == (3, 3, 64, 56)
    with torch.no_grad():
        predictions = model(**batch, mode="predict")
        alone = [
            model(**preprocessor({"inputs": [image], "data_samples": [sample]}), mode="predict")[0]
            for image, sample in zip(images, samples, strict=True)
        ]
        padded_logits = _logits(model, batch["inputs"])[0, :, :40, :56]
        alone_logits = _logits(model, preprocessor({"inputs": images[:1]})["inputs"])[0]

    for prediction, single, meta in zip(predictions, alone, metas, strict=True):
        assert prediction["pred_mask"].dtype == torch.int64
        assert tuple(prediction["pred_mask"].shape) == meta["ori_shape"]
        assert prediction["meta"] == meta
        assert torch.equal(prediction["pred_mask"], single["pred_mask"])
    # Not a constant map, so the equality above says something.
    assert max(p["pred_mask"].unique().numel() for p in predictions) >= 2
    assert torch.equal(predictions[0]["gt_mask"], samples[0]["mask"])
    assert "gt_mask" not in predictions[1]
    # Running the padded batch as is would change the logits (image pooling, borders).
    assert not torch.allclose(padded_logits, alone_logits, atol=1e-3)
    # ori_shape != img_shape: logits are resized bilinearly before the argmax.
    with torch.no_grad():
        logits = _logits(model, preprocessor({"inputs": images[1:2]})["inputs"])
    expected = F.interpolate(logits, size=(96, 72), mode="bilinear", align_corners=False)
    assert torch.equal(predictions[1]["pred_mask"], expected[0].argmax(0))
    with pytest.raises(ValueError, match=r"img_shape.*\(70, 56\) of x\.jpg exceeds"):
        model(
            batch["inputs"][:1], [{"meta": {"img_shape": (70, 56), "img_path": "x.jpg"}}], "predict"
        )


def test_multi_scale_flip_test_averages_probabilities_and_is_flip_symmetric():
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    model = _calibrated_segmentor(test_cfg=dict(scales=scales, flip=True))
    inputs = DataPreprocessor()({"inputs": [_uint8_image(41, 57, seed=4)]})["inputs"]
    meta = {"img_shape": (41, 57), "ori_shape": (82, 57)}
    with torch.no_grad():
        (prediction,) = model(inputs, [{"meta": meta}], mode="predict")
        (mirrored,) = model(inputs.flip(-1), [{"meta": meta}], mode="predict")
        expected = 0
        for scale in scales:
            size = (math.floor(41 * scale + 0.5), math.floor(57 * scale + 0.5))
            scaled = F.interpolate(inputs, size=size, mode="bilinear", align_corners=False)
            for logits in (_logits(model, scaled), _logits(model, scaled.flip(-1)).flip(-1)):
                resized = F.interpolate(logits, (82, 57), mode="bilinear", align_corners=False)
                expected = expected + resized.softmax(dim=1)
        (single_scale,) = _calibrated_segmentor()(inputs, [{"meta": meta}], mode="predict")
    assert prediction["pred_mask"].shape == (82, 57)
    assert torch.equal(prediction["pred_mask"], expected[0].argmax(0))
    # The (image, mirror) ensemble is symmetric: mirroring the input mirrors the prediction.
    assert torch.equal(mirrored["pred_mask"], prediction["pred_mask"].flip(-1))
    assert not torch.equal(single_scale["pred_mask"], prediction["pred_mask"])


def test_torchvision_backbone_weights_load():
    reference = torchvision.models.mobilenet_v2(weights=None)
    model = mtvision.create_model("deeplabv3_mobilenet_v2")
    # final_conv (features.18) and the classifier are absent on purpose; the rest loads strictly.
    model.load_torchvision_state_dict(reference.state_dict())
    features = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    result = load_torchvision_weights(model.backbone, features)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(
        model.backbone.stage7[0].project.conv.weight, features["features.17.conv.2.weight"]
    )
    assert torch.equal(model.backbone.stem.conv.weight, features["features.0.0.weight"])


def _two_shapes_scene(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """64x64 dark noise with a red disk (class 1) and a blue square (class 2)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    rows, cols = np.mgrid[:64, :64]
    cy, cx = rng.integers(14, 50, 2)
    disk = (rows - cy) ** 2 + (cols - cx) ** 2 < 12**2
    image[disk], mask[disk] = (200, 60, 60), 1
    y, x = rng.integers(0, 40, 2)
    image[y : y + 22, x : x + 22], mask[y : y + 22, x : x + 22] = (60, 60, 200), 2
    return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(mask)


def test_overfits_two_images():
    torch.manual_seed(0)
    model = mtvision.create_model(
        "deeplabv3_mobilenet_v2", num_classes=3, width_mult=0.35, output_stride=8
    )
    scenes = [_two_shapes_scene(seed) for seed in (0, 1)]
    batch = {
        "inputs": [image for image, _ in scenes],
        "data_samples": [{"mask": mask, "meta": {"img_shape": (64, 64)}} for _, mask in scenes],
    }
    masks = torch.stack([mask for _, mask in scenes])
    foreground = masks != 0

    def accuracies() -> tuple[float, float]:
        """(pixel accuracy, accuracy on disk and square pixels) of eval-mode predictions."""
        model.eval()
        with torch.no_grad():
            predictions = model.val_step(batch)
        correct = torch.stack([p["pred_mask"] for p in predictions]) == masks
        model.train()
        return correct.float().mean().item(), correct[foreground].float().mean().item()

    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    model.train()
    first = model.train_step(batch, optim_wrapper)["segmentation.loss_seg"].item()
    _, foreground_before = accuracies()
    for _ in range(40):
        last = model.train_step(batch, optim_wrapper)["segmentation.loss_seg"].item()
    # BN running averages lag 40 fast-moving steps; recompute them on the batch (precise BN).
    update_bn([model.data_preprocessor(batch)["inputs"]], model)
    accuracy, foreground_accuracy = accuracies()
    assert last < 0.2 * first
    assert foreground_before < 0.3
    assert foreground_accuracy > 0.6
    assert accuracy > (~foreground).float().mean().item() + 0.08


# The second variant: TF's padding and resize, as converted TF weights use them.
@pytest.mark.parametrize(
    "options", [dict(head="aspp"), dict(head="aspp", padding="same", align_corners=True)]
)
def test_onnx_export_matches_torch(tmp_path, options):
    model = _calibrated_segmentor(**options)
    path = export_onnx(model, tmp_path / "deeplabv3.onnx", input_shape=(1, 3, 64, 80))
    inputs = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        scale = model(inputs)["segmentation"]["seg_logits"].abs().max().item()
    assert scale > 1.0
    assert check_onnx_matches(model, path, inputs) < 1e-4 * scale


def test_align_corners_resizes_like_tf_deeplab():
    """align_corners=True (TF-DeepLab's resize): feature k of a (H - 1) / 16 + 1 map lands
    on pixel 16 k; the default keeps PyTorch's pixel-centre rule."""
    model = _calibrated_segmentor(align_corners=True)
    reference = _calibrated_segmentor()  # same seed, same weights
    head, reference_head = model.heads["segmentation"], reference.heads["segmentation"]
    assert head.align_corners and not reference_head.align_corners
    inputs = DataPreprocessor()({"inputs": [_uint8_image(65, 49, seed=6)]})["inputs"]
    with torch.no_grad():
        outputs = model(inputs)["segmentation"]
        logits = head.postprocess(outputs, (65, 49))["seg_logits"]
        default = reference_head.postprocess(reference(inputs)["segmentation"], (65, 49))
    head_logits = outputs["seg_logits"]
    assert head_logits.shape[-2:] == (5, 4)  # (65 - 1) / 16 + 1, (49 - 1) / 16 + 1
    torch.testing.assert_close(logits[..., ::16, ::16], head_logits, rtol=0, atol=1e-6)
    expected = F.interpolate(head_logits, size=(65, 49), mode="bilinear", align_corners=True)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    assert not torch.allclose(logits, default["seg_logits"], atol=1e-3)
    # predict resizes to ori_shape by the same rule.
    sample = {"meta": {"img_shape": (65, 49), "ori_shape": (130, 98)}}
    with torch.no_grad():
        (prediction,) = model(inputs, [sample], mode="predict")
    resized = F.interpolate(logits, size=(130, 98), mode="bilinear", align_corners=True)
    assert torch.equal(prediction["pred_mask"], resized[0].argmax(0))


def test_align_corners_also_scales_the_test_time_views():
    """Multi-scale test with align_corners=True: the images go to each scale, the logits
    back to ori_shape, all by TF's corner-aligned rule (TF-DeepLab's multi-scale eval)."""
    model = _calibrated_segmentor(align_corners=True, test_cfg=dict(scales=(0.75, 1.0)))
    image, _ = _two_shapes_scene(0)
    inputs = DataPreprocessor()({"inputs": [image]})["inputs"]
    sample = {"meta": {"img_shape": (64, 64), "ori_shape": (69, 75)}}

    def resize(x, size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    total = 0
    with torch.no_grad():
        (prediction,) = model(inputs, [sample], mode="predict")
        for size in ((48, 48), (64, 64)):
            view = resize(inputs, size) if size != (64, 64) else inputs
            head_logits = model(view)["segmentation"]["seg_logits"]
            total = total + resize(resize(head_logits, size), (69, 75)).softmax(1)[0]
    assert len(prediction["pred_mask"].unique()) >= 2  # not a constant map
    assert torch.equal(prediction["pred_mask"], total.argmax(0))
    # With PyTorch's rule the prediction differs: the option reaches every resize.
    reference = _calibrated_segmentor(test_cfg=dict(scales=(0.75, 1.0)))
    with torch.no_grad():
        (other,) = reference(inputs, [sample], mode="predict")
    assert (other["pred_mask"] != prediction["pred_mask"]).float().mean() > 0.01
