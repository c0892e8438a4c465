"""MediaPipe Tasks on real photos with Google's converted weights (../shared/realdata):
the converted classifier through MediaPipe's ImageClassifier has torch's top-1 on the 14
photos, the converted VOC DeepLab through its ImageSegmenter torch's class map on the VOC
crops. The checkpoints are converted here (tmp dirs) as tools/convert_weights.py does,
then exported as MediaPipe-ready .tflite files (a few minutes: slow)."""

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install -e '.[mediapipe]')")
pytest.importorskip(
    "litert_torch", reason="litert_torch not installed (pip install -e '.[litert]')"
)

from mtvision.convert.tflite_conversion import convert_tflite  # noqa: E402
from mtvision.export import DeployedModel  # noqa: E402
from mtvision.export.deploy import DeployModel  # noqa: E402
from mtvision.export.litert_export import export_deploy_tflite  # noqa: E402

pytestmark = pytest.mark.slow
CORAL = "coral_mobilenetv2_tflite"
VOC = "voc2012_seg_samples_vainf/VOCdevkit/VOC2012"


def _resized(path, size: int) -> np.ndarray:
    """EXPECTED.md's preprocessing: RGB, PIL bilinear resize straight to the input size."""
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))


def _mediapipe_file(realdata, name, size, labels, tmp_path_factory):
    """Google's file converted with its label file, exported by mtvision's .tflite exporter
    (MediaPipe metadata written by it)."""
    model, meta = convert_tflite(
        str(realdata / CORAL / "models" / f"{name}.tflite"),
        labels=realdata / CORAL / "labels" / labels,
    )
    model.eval()
    (head,) = model.heads
    classes = {head: list(meta["dataset_meta"]["classes"])}
    path = tmp_path_factory.mktemp("mp_real") / f"{name}.tflite"
    export_deploy_tflite(model, path, (size, size), classes=classes)
    return model, path


@pytest.fixture(scope="module")
def classifier(realdata, tmp_path_factory):
    return _mediapipe_file(
        realdata, "mobilenet_v2_1.0_224_quant", 224, "imagenet_labels.txt", tmp_path_factory
    )


@pytest.fixture(scope="module")
def segmenter(realdata, tmp_path_factory):
    return _mediapipe_file(
        realdata,
        "deeplabv3_mnv2_pascal_quant",
        513,
        "pascal_voc_segmentation_labels.txt",
        tmp_path_factory,
    )


def _torch(model, images: torch.Tensor, topk: int = 5) -> dict:
    with torch.no_grad():
        return DeployModel(model, topk).eval().outputs(images)


def test_converted_classifier_through_image_classifier_has_torchs_top1(realdata, classifier):
    model, path = classifier
    photos = sorted(p for p in (realdata / CORAL / "images").iterdir() if "_mask" not in p.name)
    assert len(photos) == 14
    images = torch.stack(
        [torch.from_numpy(_resized(p, 224).copy()).permute(2, 0, 1) for p in photos]
    )
    want = _torch(model, images)["classification"]
    got = DeployedModel(path, runtime="mediapipe").run(images)["classification"]
    same = (got["labels"][:, 0] == want["labels"][:, 0]).tolist()
    for photo, ok, a, b, s in zip(
        photos, same, got["labels"][:, 0], want["labels"][:, 0], got["scores"][:, 0], strict=True
    ):
        print(f"{photo.name}: MediaPipe top-1 {int(a)} ({float(s):.3f}), torch {int(b)}, same {ok}")
    assert all(same), (
        f"top-1 differs on {[p.name for p, ok in zip(photos, same, strict=True) if not ok]}"
    )
    torch.testing.assert_close(got["scores"][:, 0], want["scores"][:, 0], atol=1e-4, rtol=1e-4)


def test_converted_deeplab_through_image_segmenter_has_torchs_class_map(realdata, segmenter):
    model, path = segmenter
    voc = realdata / VOC
    ids = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    runner = DeployedModel(path, runtime="mediapipe")
    agreements = {}
    for i in ids:
        image = torch.from_numpy(_resized(voc / "JPEGImages" / f"{i}.jpg", 513).copy())
        image = image.permute(2, 0, 1)[None]
        want = _torch(model, image)["segmentation"]["mask"]
        got = runner.run(image)["segmentation"]["mask"]
        agreements[i] = float((got == want).double().mean())
    print("DeepLab VOC crops, MediaPipe vs torch pixel agreement:", agreements)
    assert len(agreements) == 14
    assert min(agreements.values()) >= 0.99
