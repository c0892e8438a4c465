"""Inferencer: results of paths, arrays and lists, in original pixels, against model.predict.

The models are the demo configs' networks with seeded random weights saved as
checkpoints in tmp_path: the format and the mapping to original pixels do not
depend on training, and the expected numbers come from the model itself run
through the dataset path (LoadImage -> test pipeline -> test_step).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from inference_toy import (
    CLASSIFIER,
    DETECTOR,
    MULTITASK,
    SEGMENTER,
    SHAPES,
    save_random_checkpoint,
    textured_image,
    write_exif_rotated_jpeg,
)
from mmengine.dataset import Compose
from PIL import Image
from torchvision.ops import box_iou

import mtvision
from mtvision.apis import Inferencer
from mtvision.data.image_io import load_image
from mtvision.data.voc_segmentation import VOC_CLASSES
from mtvision.engine import load_config
from mtvision.errors import CheckpointError, ExportError, ImageLoadError
from mtvision.export import export_deploy_onnx
from mtvision.registry import TRANSFORMS
from mtvision.tasks import CLASSIFICATION, DETECTION, SEGMENTATION

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

REPO = Path(__file__).resolve().parents[1]


def reference_predictions(config: str, model, path: str, entry: str | None = None) -> dict:
    """model.test_step on the file loaded and preprocessed as the test set is (LoadImage first;
    there is no mask to load)."""
    cfg = load_config(config)
    loader = cfg.test_dataloader if entry is None else cfg.test_dataloader[entry]
    steps = [step for step in loader.dataset.pipeline if step["type"] != "LoadMask"]
    pipeline = Compose([TRANSFORMS.build(step) for step in steps])
    sample = pipeline({"img_path": path})
    with torch.no_grad():
        (prediction,) = model.test_step(
            {"inputs": [sample["inputs"]], "data_samples": [sample["data_samples"]]}
        )
    return prediction


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "detector.pth"
    dataset_meta = {"classes": SHAPES, "category_ids": [1, 2, 3, 4, 5, 6]}
    return save_random_checkpoint(DETECTOR, path, dataset_meta), str(path)


def test_detection_boxes_in_original_pixels_of_an_exif_rotated_image(detector, tmp_path):
    model, checkpoint = detector
    # Stored 150 wide x 90 tall, shown upright 90 wide x 150 tall: both non-square.
    path = str(tmp_path / "sideways.jpg")
    upright = write_exif_rotated_jpeg(path, textured_image(90, 150))
    assert upright.shape == (150, 90, 3)
    inferencer = Inferencer(DETECTOR, checkpoint, score_threshold=0.0)
    assert not inferencer.multi_head

    result = inferencer(path)
    expected = reference_predictions(DETECTOR, model, path)
    order = torch.argsort(expected["scores"], descending=True, stable=True)
    assert len(result["boxes"]) == len(order) > 10  # random weights: many weak detections
    np.testing.assert_allclose(result["boxes"], expected["boxes"][order].numpy(), atol=1e-4)
    np.testing.assert_allclose(result["scores"], expected["scores"][order].numpy(), atol=1e-6)
    assert result["labels"] == expected["labels"][order].tolist()
    assert result["label_names"] == [SHAPES[label] for label in result["labels"]]
    assert result["scores"] == sorted(result["scores"], reverse=True)
    boxes = np.array(result["boxes"])
    # Inside the upright 90 x 150 image, and reaching beyond the 160 x 160 network input's
    # scale in neither direction: x up to 90, y up to 150.
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= 90
    assert boxes[:, [1, 3]].min() >= 0 and boxes[:, [1, 3]].max() <= 150
    assert boxes[:, 3].max() > 100  # some box lies in the lower part of the tall picture

    # The same upright pixels given as an array give the same numbers.
    from_array = inferencer(upright)
    np.testing.assert_allclose(from_array["boxes"], result["boxes"], atol=1e-4)

    # The score threshold keeps the detections scoring at least it, nothing else.
    threshold = float(np.median(result["scores"]))
    strict = Inferencer(DETECTOR, checkpoint, score_threshold=threshold)(path)
    kept = [i for i, score in enumerate(result["scores"]) if score >= threshold]
    assert 0 < len(strict["scores"]) == len(kept) < len(result["scores"])
    np.testing.assert_allclose(strict["boxes"], np.array(result["boxes"])[kept], atol=1e-4)


def test_list_in_list_out_and_bad_inputs(detector, tmp_path):
    _, checkpoint = detector
    inferencer = Inferencer(DETECTOR, checkpoint, score_threshold=0.0)
    images = [textured_image(70, 120, seed=1), textured_image(200, 50, seed=2)]
    results = inferencer(images, batch_size=2)
    assert isinstance(results, list) and len(results) == 2
    one_by_one = [inferencer(image) for image in images]
    for batched, single, image in zip(results, one_by_one, images, strict=True):
        assert set(batched) == {"boxes", "scores", "labels", "label_names"}
        np.testing.assert_allclose(batched["boxes"], single["boxes"], atol=1e-4)
        boxes = np.array(batched["boxes"])
        assert boxes[:, 2].max() <= image.shape[1] and boxes[:, 3].max() <= image.shape[0]

    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="missing.jpg"):
        inferencer(missing)
    with pytest.raises(
        ValueError, match=r"^input 1 is a 3-D float32 array \(70, 120, 3\); pass an"
    ):
        inferencer([images[0], images[0].astype(np.float32)])
    with pytest.raises(TypeError, match=r"^input 0 is a list; pass a file path, an \(H, W, 3\)"):
        inferencer([[1, 2, 3]])
    with pytest.raises(ValueError, match="backend 'torch' needs a checkpoint"):
        Inferencer(DETECTOR)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        Inferencer(DETECTOR, str(tmp_path / "nothing.pth"))
    classifier_checkpoint = tmp_path / "classifier.pth"
    save_random_checkpoint(CLASSIFIER, classifier_checkpoint)
    with pytest.raises(CheckpointError, match="classifier.pth"):
        Inferencer(DETECTOR, str(classifier_checkpoint))


def test_pil_images_bytes_files_and_tensors_give_the_paths_results(detector, tmp_path):
    """A phone photo stored sideways (EXIF orientation 6) given as Image.open(path), its
    bytes, a file object or a decoded tensor: the same boxes as the path, alone or mixed."""
    _, checkpoint = detector
    path = tmp_path / "sideways.jpg"
    upright = write_exif_rotated_jpeg(path, textured_image(60, 110, seed=3))
    inferencer = Inferencer(DETECTOR, checkpoint, score_threshold=0.0)
    expected = inferencer(str(path))
    assert len(expected["boxes"]) > 10
    boxes = np.array(expected["boxes"])
    assert boxes[:, [0, 2]].max() <= 60 and boxes[:, [1, 3]].max() <= 110  # upright pixels

    with Image.open(path) as image:
        from_pil = inferencer(image)
    assert from_pil == expected
    data = path.read_bytes()
    with open(path, "rb") as f:
        mixed = [path, Image.open(path), data, f, torch.from_numpy(upright).permute(2, 0, 1)]
        results = inferencer(mixed, batch_size=2)
    assert results == [expected] * len(mixed)
    with pytest.raises(TypeError, match=r"^input 1 is a dict; pass a file path"):
        inferencer([data, {"image": data}])


def test_classification_top_k_with_class_names(tmp_path):
    checkpoint = tmp_path / "classifier.pth"
    model = save_random_checkpoint(CLASSIFIER, checkpoint, {"classes": SHAPES})
    path = str(tmp_path / "photo.png")
    Image.fromarray(textured_image(48, 100)).save(path)

    result = mtvision.Inferencer(CLASSIFIER, str(checkpoint), topk=3)(path)
    scores = reference_predictions(CLASSIFIER, model, path)["pred_score"]
    top = torch.topk(scores, 3)
    assert result["labels"] == top.indices.tolist()
    np.testing.assert_allclose(result["scores"], top.values.numpy(), atol=1e-6)
    assert result["label_names"] == [SHAPES[label] for label in result["labels"]]
    # More classes asked than the model has: all six.
    assert len(Inferencer(CLASSIFIER, str(checkpoint), topk=10)(path)["labels"]) == 6


def test_segmentation_mask_at_original_size_with_config_class_names(tmp_path):
    checkpoint = tmp_path / "segmenter.pth"
    model = save_random_checkpoint(SEGMENTER, checkpoint)  # no dataset_meta: the config's
    path = str(tmp_path / "sideways.jpg")
    write_exif_rotated_jpeg(path, textured_image(40, 72))

    result = Inferencer(SEGMENTER, str(checkpoint))(path)
    expected = reference_predictions(SEGMENTER, model, path)["pred_mask"].numpy()
    assert result["mask"].dtype == np.uint8 and result["mask"].shape == (72, 40)
    assert np.array_equal(result["mask"], expected)
    labels, areas = np.unique(expected, return_counts=True)
    assert result["labels"] == labels.tolist() and result["areas"] == areas.tolist()
    seg_classes = load_config(SEGMENTER).classes
    assert result["label_names"] == [seg_classes[label] for label in labels]


def test_multitask_results_per_head(tmp_path):
    checkpoint = tmp_path / "multitask.pth"
    model = save_random_checkpoint(MULTITASK, checkpoint)
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(textured_image(100, 140)).save(path)

    inferencer = Inferencer(MULTITASK, str(checkpoint), score_threshold=0.0, topk=2)
    assert inferencer.multi_head
    assert {name: head.task for name, head in inferencer.heads.items()} == {
        "classification": CLASSIFICATION,
        "detection": DETECTION,
        "segmentation": SEGMENTATION,
    }
    result = inferencer(path)
    assert set(result) == {"classification", "detection", "segmentation"}
    expected = reference_predictions(MULTITASK, model, path, entry="shapes")
    assert (
        result["classification"]["labels"] == torch.topk(expected["pred_score"], 2).indices.tolist()
    )
    assert len(result["detection"]["boxes"]) == len(expected["boxes"])
    np.testing.assert_allclose(
        sorted(result["detection"]["scores"]), sorted(expected["scores"].tolist()), atol=1e-6
    )
    assert np.array_equal(result["segmentation"]["mask"], expected["pred_mask"].numpy())
    # Class names from the config's joined dataset: each head its own label space.
    seg_classes = load_config(MULTITASK).seg_classes
    names = [seg_classes[label] for label in result["segmentation"]["labels"]]
    assert result["segmentation"]["label_names"] == names

    picture = inferencer.draw(load_image(path), result)
    assert picture.shape[1] == 160 and picture.shape[0] > 100  # caption below, padded width
    assert not np.array_equal(picture[:100, :140], load_image(path))


def matched_detections(reference: dict, other: dict, iou: float = 0.99, score_tol: float = 1e-4):
    """How many of ``reference``'s detections ``other`` has too: same label, score within
    ``score_tol``, box IoU at least ``iou`` (order may differ among near-equal scores)."""
    if not reference["boxes"] or not other["boxes"]:
        return 0
    ious = box_iou(torch.tensor(reference["boxes"]), torch.tensor(other["boxes"]))
    same_label = torch.tensor(reference["labels"])[:, None] == torch.tensor(other["labels"])
    close = (torch.tensor(reference["scores"])[:, None] - torch.tensor(other["scores"])).abs()
    return int(((ious >= iou) & same_label & (close <= score_tol)).any(dim=1).sum())


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_deployed_backends_give_the_torch_format_and_numbers(backend, tmp_path):
    if backend == "openvino":
        pytest.importorskip(
            "openvino", reason="openvino not installed (pip install -e '.[openvino]')"
        )
    checkpoint = tmp_path / "multitask.pth"
    model = save_random_checkpoint(MULTITASK, checkpoint)
    onnx_file = str(tmp_path / "multitask.onnx")
    export_deploy_onnx(model, onnx_file, (160, 160), classes={"detection": list(SHAPES)})
    path = str(tmp_path / "sideways.jpg")
    write_exif_rotated_jpeg(path, textured_image(90, 150))

    torch_inferencer = Inferencer(MULTITASK, str(checkpoint), score_threshold=0.5)
    onnx_inferencer = Inferencer(MULTITASK, backend=backend, model=onnx_file, score_threshold=0.5)
    expected, result = torch_inferencer(path), onnx_inferencer(path)

    assert set(result) == set(expected)
    for head in result:
        assert set(result[head]) == set(expected[head])
        for field, value in result[head].items():
            assert type(value) is type(expected[head][field]), (head, field)
    assert result["classification"]["labels"] == expected["classification"]["labels"]
    np.testing.assert_allclose(
        result["classification"]["scores"], expected["classification"]["scores"], atol=1e-5
    )
    detections = expected["detection"]
    assert len(result["detection"]["boxes"]) == len(detections["boxes"]) > 5
    assert matched_detections(detections, result["detection"]) >= 0.95 * len(detections["boxes"])
    # Class names: the ONNX file's (recorded at export) over the config's (none for COCO).
    assert result["detection"]["label_names"] == [SHAPES[i] for i in result["detection"]["labels"]]
    assert detections["label_names"] == [str(i) for i in detections["labels"]]
    mask, expected_mask = result["segmentation"]["mask"], expected["segmentation"]["mask"]
    assert mask.dtype == np.uint8 and mask.shape == expected_mask.shape == (150, 90)
    # The graph takes the argmax at the input size and resizes the class map; torch resizes
    # the logits first: random weights put class borders everywhere, so a few pixels differ.
    assert (mask == expected_mask).mean() > 0.95


def test_onnx_file_that_does_not_fit_the_config(tmp_path):
    detector = save_random_checkpoint(DETECTOR, tmp_path / "detector.pth")
    small = str(tmp_path / "detector_128.onnx")
    export_deploy_onnx(detector, small, (128, 128))
    with pytest.raises(
        ExportError, match=r"takes 128x128 images .*ssdlite_shapes.py gives 160x160"
    ):
        Inferencer(DETECTOR, backend="onnxruntime", model=small)
    with pytest.raises(ExportError, match=r"detector_128.onnx has the heads \['detection'\] but"):
        Inferencer(CLASSIFIER, backend="onnxruntime", model=small)
    with pytest.raises(ValueError, match="needs model=<the exported file>"):
        Inferencer(DETECTOR, backend="onnxruntime")


def test_each_head_runs_on_its_evaluation_entrys_pipeline(tmp_path):
    """A multi-task config with one test entry per dataset: each head sees the image as its
    entry's pipeline makes it (classification: resize + centre crop; detection: resize;
    segmentation: the whole image), as in evaluation."""
    config = tmp_path / "recipe.py"
    bases = [
        str(REPO / "configs/_base_/models/multitask_mobilenet_v2.py"),
        str(REPO / "configs/_base_/datasets/multitask_coco_voc_imagenet.py"),
        str(REPO / "configs/_base_/default_runtime.py"),
    ]
    config.write_text(f"_base_ = {bases!r}\nmodel = dict(backbone=dict(width_mult=0.35))\n")
    checkpoint = tmp_path / "multitask.pth"
    model = save_random_checkpoint(str(config), checkpoint)
    path = str(tmp_path / "photo.png")
    Image.fromarray(textured_image(100, 140)).save(path)

    inferencer = Inferencer(str(config), str(checkpoint), score_threshold=0.0)
    assert [entry.heads for entry in inferencer.entries] == [
        ("classification",),
        ("detection",),
        ("segmentation",),
    ]
    result = inferencer(path)
    for entry, head in (
        ("imagenet", "classification"),
        ("coco", "detection"),
        ("voc", "segmentation"),
    ):
        with model.active_heads([head]):
            expected = reference_predictions(str(config), model, path, entry=entry)
        if head == "classification":
            top = torch.topk(expected["pred_score"], 5)
            assert result[head]["labels"] == top.indices.tolist()
            np.testing.assert_allclose(result[head]["scores"], top.values.numpy(), atol=1e-6)
        elif head == "detection":
            order = torch.argsort(expected["scores"], descending=True, stable=True)
            np.testing.assert_allclose(result[head]["boxes"], expected["boxes"][order], atol=1e-4)
        else:
            assert np.array_equal(result[head]["mask"], expected["pred_mask"].numpy())
    # VOC's class names from the dataset class (the config names none).
    names = [VOC_CLASSES[label] for label in result["segmentation"]["labels"]]
    assert result["segmentation"]["label_names"] == names
