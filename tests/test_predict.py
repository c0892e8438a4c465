"""tools/predict.py: pictures, masks and JSON per image; folders, globs and bad inputs."""

import json

import numpy as np
import pytest
from engine_toy import load_tool
from inference_toy import (
    DETECTOR,
    MULTITASK,
    SHAPES,
    save_random_checkpoint,
    textured_image,
    write_exif_rotated_jpeg,
)
from PIL import Image

from mtvision.apis import Inferencer
from mtvision.data.image_io import load_image
from mtvision.engine.cli import run_cli
from mtvision.export import export_deploy_onnx

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")

predict_tool = load_tool("predict")


@pytest.fixture(scope="module")
def detector_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "detector.pth"
    save_random_checkpoint(DETECTOR, path, {"classes": SHAPES})
    return str(path)


def run_tool(argv, capsys) -> tuple[int, str, str]:
    """Run the tool as the command line does; (exit status, stdout, stderr)."""
    try:
        run_cli(lambda: predict_tool.main(argv))
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_folders_globs_and_bad_files(detector_checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "day").mkdir(parents=True)
    (photos / "night").mkdir()
    (photos / ".thumbnails").mkdir()
    # Two inputs with one file name in different folders, one EXIF-rotated and non-square.
    upright = write_exif_rotated_jpeg(photos / "day" / "cat.jpg", textured_image(60, 110))
    Image.fromarray(textured_image(80, 50, seed=3)).save(photos / "night" / "cat.jpg")
    Image.fromarray(textured_image(30, 30)).save(photos / ".thumbnails" / "cat.jpg")  # hidden
    (photos / "night" / "notes.txt").write_text("not an image")
    (photos / "night" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    single = tmp_path / "elsewhere" / "cat.png"
    single.parent.mkdir()
    Image.fromarray(textured_image(40, 70, seed=4)).save(single)
    namesake = tmp_path / "other" / "cat.png"  # given directly too: same output name
    namesake.parent.mkdir()
    Image.fromarray(textured_image(44, 30, seed=5)).save(namesake)
    out = tmp_path / "out"

    argv = [DETECTOR, detector_checkpoint, str(photos), str(single), str(namesake)]
    argv += [str(tmp_path / "gone.jpg")]
    argv += [str(tmp_path / "elsewhere" / "*.png"), "--out-dir", str(out), "--score-thr", "0.05"]
    status, stdout, stderr = run_tool(argv, capsys)

    assert status == 0
    # The folder's two pictures under its name, the single files (the glob matches one
    # again: predicted once) as cat and cat-2; the hidden folder is left out.
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "cat-2.jpg",
        "cat-2.json",
        "cat.jpg",
        "cat.json",
        "photos/day/cat.jpg",
        "photos/day/cat.json",
        "photos/night/cat.jpg",
        "photos/night/cat.json",
    ]
    assert "predicted 4 images into" in stdout and "skipped 3" in stdout
    skip_lines = [line for line in stderr.splitlines() if line.startswith("skipped ")]
    assert len(skip_lines) == 3
    assert any("notes.txt: not an image file" in line for line in skip_lines)
    assert any("gone.jpg: no such file or folder" in line for line in skip_lines)
    assert any("broken.jpg" in line and "jpeg" in line.lower() for line in skip_lines)

    document = json.loads((out / "photos/day/cat.json").read_text())
    assert document["image"] == str(photos / "day" / "cat.jpg")
    assert (document["width"], document["height"]) == (60, 110)  # upright, EXIF applied
    expected = Inferencer(DETECTOR, detector_checkpoint, score_threshold=0.05)(upright)
    assert set(document) == {"image", "width", "height", "boxes", "scores", "labels", "label_names"}
    assert len(document["boxes"]) == len(expected["boxes"]) > 0
    np.testing.assert_allclose(document["boxes"], expected["boxes"], atol=1e-4)
    np.testing.assert_allclose(document["scores"], expected["scores"], atol=1e-6)
    assert document["label_names"] == [SHAPES[label] for label in document["labels"]]
    assert min(document["scores"]) >= 0.05
    boxes = np.array(document["boxes"])
    assert boxes[:, [0, 2]].max() <= 60 and boxes[:, [1, 3]].max() <= 110

    picture = load_image(out / "photos/day/cat.jpg")
    assert picture.shape == (110, 60, 3)  # boxes drawn on the upright original
    assert np.abs(picture.astype(int) - upright).max() > 100  # boxes drawn in bright colours
    night = json.loads((out / "photos/night/cat.json").read_text())
    assert (night["width"], night["height"]) == (50, 80)
    assert json.loads((out / "cat-2.json").read_text())["image"] == str(namesake)

    # Predicting into a folder inside the input folder, twice: its pictures are not inputs.
    inside = photos / "predictions"
    for _ in range(2):
        status, stdout, _ = run_tool(
            [DETECTOR, detector_checkpoint, str(photos), "--out-dir", str(inside)], capsys
        )
        assert status == 0 and "predicted 2 images" in stdout
    assert json.loads((out / "cat.json").read_text())["image"] == str(single)


def test_multitask_mask_png_and_json_per_head(tmp_path, capsys):
    checkpoint = tmp_path / "multitask.pth"
    save_random_checkpoint(MULTITASK, checkpoint)
    image_path = tmp_path / "street.jpg"
    Image.fromarray(textured_image(90, 120)).save(image_path, quality=95)
    out = tmp_path / "out"

    status, stdout, _ = run_tool(
        [MULTITASK, str(checkpoint), str(image_path), "--out-dir", str(out), "--topk", "3"],
        capsys,
    )
    assert status == 0 and "predicted 1 images" in stdout
    document = json.loads((out / "street.json").read_text())
    assert set(document) == {
        "image",
        "width",
        "height",
        "classification",
        "detection",
        "segmentation",
    }
    assert len(document["classification"]["labels"]) == 3
    assert document["segmentation"]["mask"] == "street_mask.png"
    expected = Inferencer(MULTITASK, str(checkpoint))(str(image_path))
    with Image.open(out / "street_mask.png") as png:
        assert png.mode == "P" and png.size == (120, 90)
        mask = np.asarray(png)
    assert np.array_equal(mask, expected["segmentation"]["mask"])
    assert document["segmentation"]["areas"] == expected["segmentation"]["areas"]
    assert sum(document["segmentation"]["areas"]) == 90 * 120
    picture = load_image(out / "street.jpg")
    assert picture.shape[0] > 90 and picture.shape[1] == 160  # top-3 caption below the image
    caption_height = picture.shape[0] - 90

    # A picture size below the image's: drawn at half size, the numbers unchanged.
    small = tmp_path / "small"
    argv = [MULTITASK, str(checkpoint), str(image_path), "--out-dir", str(small), "--topk", "3"]
    status, _, _ = run_tool([*argv, "--picture-size", "60"], capsys)
    assert status == 0
    assert load_image(small / "street.jpg").shape == (45 + caption_height, 160, 3)
    assert json.loads((small / "street.json").read_text()) == document
    with Image.open(small / "street_mask.png") as png:
        assert png.size == (120, 90)


def test_nothing_predictable_and_bad_checkpoint_are_errors(detector_checkpoint, tmp_path, capsys):
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    status, stdout, stderr = run_tool(
        [DETECTOR, detector_checkpoint, str(text), "--out-dir", str(tmp_path / "out")], capsys
    )
    assert status == 2
    assert "predicted 0 images" in stdout
    assert f"skipped {text}: " in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: no image could be predicted")

    image = tmp_path / "a.png"
    Image.fromarray(textured_image(20, 20)).save(image)
    missing = str(tmp_path / "missing.pth")
    status, _, stderr = run_tool(
        [DETECTOR, missing, str(image), "--out-dir", str(tmp_path / "out")], capsys
    )
    assert status == 2
    assert stderr.strip().splitlines() == [f"error: checkpoint file not found: {missing}"]
    with pytest.raises(SystemExit):
        predict_tool.parse_args([DETECTOR, "-", str(image), "--out-dir", "x"])


def test_onnxruntime_backend_writes_the_same_files(detector_checkpoint, tmp_path, capsys):
    model = Inferencer(DETECTOR, detector_checkpoint).model
    onnx_file = str(tmp_path / "detector.onnx")
    export_deploy_onnx(model, onnx_file, (160, 160), classes={"detection": list(SHAPES)})
    image = tmp_path / "photos" / "wide.png"
    image.parent.mkdir()
    Image.fromarray(textured_image(50, 130)).save(image)

    documents = {}
    for backend, extra in (("torch", []), ("onnxruntime", ["--model", onnx_file])):
        out = tmp_path / backend
        checkpoint = detector_checkpoint if backend == "torch" else "-"
        argv = [DETECTOR, checkpoint, str(image.parent), "--out-dir", str(out), "--backend"]
        status, _, _ = run_tool([*argv, backend, *extra, "--score-thr", "0.5"], capsys)
        assert status == 0
        assert sorted(p.name for p in (out / "photos").iterdir()) == ["wide.jpg", "wide.json"]
        documents[backend] = json.loads((out / "photos" / "wide.json").read_text())
    torch_doc, onnx_doc = documents["torch"], documents["onnxruntime"]
    assert list(onnx_doc) == list(torch_doc)
    assert onnx_doc["label_names"] == [SHAPES[label] for label in onnx_doc["labels"]]
    assert len(onnx_doc["boxes"]) == len(torch_doc["boxes"]) > 0
    np.testing.assert_allclose(sorted(onnx_doc["scores"]), sorted(torch_doc["scores"]), atol=1e-4)
