"""One OpenCV owns ``cv2/``, and albumentations and mediapipe run on it.

``mmengine`` (full) depends on ``opencv-python``, albumentations on
``opencv-python-headless`` and mediapipe (the extra ``mediapipe``) on
``opencv-contrib-python``; all three wheels write the same ``cv2/`` folder, and
uninstalling one later breaks the others. The project therefore depends on
``mmengine-lite`` (the same ``mmengine`` module without that dependency) and pins
``opencv-python-headless`` and ``opencv-contrib-python`` to one version, so that
whichever wrote ``cv2/`` last it is one OpenCV of that version (the contrib build
is a superset of the headless one).
"""

import importlib.metadata as metadata
from pathlib import Path

import albumentations as A
import cv2
import numpy as np


def installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_the_opencv_distributions_have_one_version():
    assert installed("opencv-python-headless")
    for other in ("opencv-python", "opencv-contrib-python-headless"):
        assert not installed(other), f"{other} is installed next to opencv-python-headless"
    versions = {
        name: metadata.version(name)
        for name in ("opencv-python-headless", "opencv-contrib-python")
        if installed(name)
    }
    assert len(set(versions.values())) == 1, f"OpenCV wheels of different versions: {versions}"


def test_mmengine_module_comes_from_mmengine_lite():
    assert installed("mmengine-lite")
    assert not installed("mmengine")
    assert metadata.packages_distributions()["mmengine"] == ["mmengine-lite"]


def test_cv2_is_one_of_the_pinned_distributions_files():
    owners = metadata.packages_distributions()["cv2"]
    assert set(owners) <= {"opencv-python-headless", "opencv-contrib-python"}, owners
    for name in owners:
        distribution = metadata.distribution(name)
        owned = {Path(distribution.locate_file(f)).resolve() for f in distribution.files}
        assert Path(cv2.__file__).resolve() in owned
        # cv2.__version__ is "5.1.0" for the wheel "5.1.0.95"
        assert metadata.version(name).startswith(cv2.__version__ + ".")
    # the core modules albumentations uses are there whichever wheel wrote them last
    image = np.zeros((8, 8, 3), np.uint8)
    assert cv2.resize(image, (4, 4)).shape == (4, 4, 3)


def test_albumentations_pipeline_with_boxes_runs():
    pipeline = A.Compose(
        [
            A.RandomResizedCrop(size=(64, 64), scale=(0.5, 1.0)),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(p=1.0),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
        seed=0,
    )
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = pipeline(image=image, bboxes=np.array([[0, 0, 160, 120]], np.float32), labels=[1])
    assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.uint8
    # a box covering the whole image covers the whole crop
    np.testing.assert_allclose(out["bboxes"], [[0, 0, 64, 64]], atol=1e-3)
    assert list(out["labels"]) == [1]
