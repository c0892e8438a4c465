"""Heads named anything: two detection heads and a classifier under names that are not their
tasks predict, draw, write prediction files and export with their own class names."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_toy import DETECTOR, SHAPES, save_random_checkpoint, textured_image
from mmengine.dataset import Compose
from PIL import Image

from mtvision.apis import Inferencer
from mtvision.apis.prediction_files import predict_to_files
from mtvision.engine import ShowPredictionsHook, load_config
from mtvision.export import export_deploy_onnx, read_deploy_metadata
from mtvision.registry import TRANSFORMS
from mtvision.tasks import CLASSIFICATION, DETECTION
from mtvision.visualization.draw import draw_detections, draw_ranked, draw_topk

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

PETS = ("cat", "dog")
KINDS = ("day", "night", "dusk")
DATASET_META = {
    "tasks": {"shapes": {"classes": SHAPES}, "pets": {"classes": PETS}, "kind": {"classes": KINDS}}
}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A config with heads ``shapes`` and ``pets`` (SSDLite) and ``kind`` (classifier)."""
    folder = tmp_path_factory.mktemp("named")
    config = folder / "named_heads.py"
    config.write_text(
        f"_base_ = [{str(ROOT / DETECTOR)!r}]\n"
        "model = dict(heads=dict(_delete_=True,\n"
        "    shapes=dict(type='SSDLiteHead', num_classes=6),\n"
        "    pets=dict(type='SSDLiteHead', num_classes=2),\n"
        "    kind=dict(type='ClassifierHead', num_classes=3)))\n"
    )
    checkpoint = folder / "named.pth"
    model = save_random_checkpoint(str(config), checkpoint, DATASET_META).eval()
    image_path = folder / "photo.png"
    Image.fromarray(textured_image(90, 120)).save(image_path)
    return model, str(config), str(checkpoint), str(image_path)


def test_heads_predict_and_draw_with_their_own_class_names(named, tmp_path):
    model, config, checkpoint, image_path = named
    assert model.head_tasks == {"shapes": DETECTION, "pets": DETECTION, "kind": CLASSIFICATION}
    inferencer = Inferencer(config, checkpoint, score_threshold=0.2, topk=2)
    result = inferencer(image_path)
    assert set(result) == {"shapes", "pets", "kind"}
    for name, classes in (("shapes", SHAPES), ("pets", PETS), ("kind", KINDS)):
        assert inferencer.heads[name].classes == classes
        assert result[name]["label_names"] == [classes[label] for label in result[name]["labels"]]
    assert max(result["pets"]["labels"], default=0) < 2 and len(result["kind"]["labels"]) == 2
    assert result["shapes"]["boxes"] and result["pets"]["boxes"]  # random weights: some boxes
    assert result["shapes"]["boxes"] != result["pets"]["boxes"]

    # Each detection head's boxes are the model's when that head runs alone.
    pipeline = Compose([TRANSFORMS.build(step) for step in load_config(config).test_pipeline])
    sample = pipeline({"img_path": image_path})
    batch = {"inputs": [sample["inputs"]], "data_samples": [sample["data_samples"]]}
    for name in ("shapes", "pets"):
        with torch.no_grad(), model.active_heads([name]):
            (alone,) = model.test_step(batch)
        keep = alone["scores"] >= 0.2
        order = torch.argsort(alone["scores"][keep], descending=True, stable=True)
        boxes = alone["boxes"][keep][order].numpy()
        np.testing.assert_allclose(result[name]["boxes"], boxes, atol=1e-4)
    image = inferencer.load(image_path)

    # The picture: both heads' boxes with their names, the classifier's caption below.
    picture = inferencer.draw(image, result)
    expected = image
    for name, classes in (("shapes", SHAPES), ("pets", PETS)):
        expected = draw_detections(
            expected,
            np.array(result[name]["boxes"]),
            result[name]["labels"],
            result[name]["scores"],
            classes,
            score_threshold=-np.inf,
        )
    expected = draw_ranked(expected, result["kind"]["labels"], result["kind"]["scores"], KINDS)
    assert np.array_equal(picture, expected)
    unnamed = draw_detections(
        image, np.array(result["pets"]["boxes"]), result["pets"]["labels"], result["pets"]["scores"]
    )
    assert not np.array_equal(picture[: image.shape[0]], unnamed)

    # Prediction files: the JSON holds every head by name with its class names.
    run = predict_to_files(inferencer, [image_path], str(tmp_path / "out"), progress=False)
    assert run.written == [image_path] and not run.skipped
    document = json.loads((tmp_path / "out" / "photo.json").read_text())
    assert set(document) == {"image", "width", "height", "shapes", "pets", "kind"}
    assert document["pets"]["label_names"] == result["pets"]["label_names"]


def test_show_hook_names_the_classes_of_the_head_that_ran(named, tmp_path):
    model, _, _, image_path = named
    sample = {"meta": {"img_path": image_path, "img_shape": (90, 120), "ori_shape": (90, 120)}}
    inputs = torch.from_numpy(textured_image(90, 120).copy()).permute(2, 0, 1)
    with torch.no_grad(), model.active_heads(["pets"]):
        (prediction,) = model.test_step({"inputs": [inputs], "data_samples": [sample]})
        heads = {name: model.head_tasks[name] for name in model.active_head_names}
    hook = ShowPredictionsHook(out_dir=str(tmp_path), score_threshold=0.0)
    (written,) = hook.show(prediction, DATASET_META, heads=heads)
    picture = np.asarray(Image.open(written).convert("RGB"))
    image = np.asarray(Image.open(image_path).convert("RGB"))
    boxes, labels, scores = (prediction[key].numpy() for key in ("boxes", "labels", "scores"))
    assert len(scores)
    assert np.array_equal(picture, draw_detections(image, boxes, labels, scores, PETS, 0.0))
    assert not np.array_equal(picture, draw_detections(image, boxes, labels, scores, SHAPES, 0.0))
    # The classifier alone: its caption with its own class names.
    with torch.no_grad(), model.active_heads(["kind"]):
        (prediction,) = model.test_step({"inputs": [inputs], "data_samples": [sample]})
    (written,) = hook.show(prediction, DATASET_META, heads={"kind": CLASSIFICATION})
    expected = draw_topk(image, prediction["pred_score"].numpy(), KINDS)
    assert np.array_equal(np.asarray(Image.open(written).convert("RGB")), expected)


def test_export_names_outputs_and_classes_by_head(named, tmp_path):
    model, config, checkpoint, image_path = named
    path = tmp_path / "named.onnx"
    classes = {"shapes": SHAPES, "pets": PETS, "kind": KINDS}
    export_deploy_onnx(model, path, (160, 160), classes=classes, topk=2)
    metadata = read_deploy_metadata(path)
    heads = metadata["heads"]
    assert {name: info["task"] for name, info in heads.items()} == {
        "shapes": "detection",
        "pets": "detection",
        "kind": "classification",
    }
    for name in ("shapes", "pets"):
        assert heads[name]["classes"] == list(classes[name])
        assert heads[name]["outputs"] == {
            field: f"{name}.{field}" for field in ("boxes", "scores", "labels", "num_detections")
        }
    assert heads["kind"]["outputs"] == {"scores": "kind.scores", "labels": "kind.labels"}
    assert heads["kind"]["classes"] == list(KINDS) and heads["kind"]["topk"] == 2

    # The deployed file, without a checkpoint: class names from its metadata, the
    # torch model's numbers.
    deployed = Inferencer(config, backend="onnxruntime", model=path, score_threshold=0.2, topk=2)
    got = deployed(image_path)
    want = Inferencer(config, checkpoint, score_threshold=0.2, topk=2)(image_path)
    for name in ("shapes", "pets", "kind"):
        assert got[name]["label_names"] == want[name]["label_names"]
        np.testing.assert_allclose(got[name]["scores"], want[name]["scores"], atol=1e-4)
    np.testing.assert_allclose(got["pets"]["boxes"], want["pets"]["boxes"], atol=1e-2)
