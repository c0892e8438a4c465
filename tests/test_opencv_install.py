"""Exactly one OpenCV distribution owns ``cv2/``, and albumentations runs on it.

``mmengine`` (full) depends on ``opencv-python`` and albumentations on
``opencv-python-headless``; both wheels write the same ``cv2/`` folder, and
uninstalling either one later breaks the other. The project therefore depends
on ``mmengine-lite`` (the same ``mmengine`` module without that dependency).
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


def test_only_the_headless_opencv_distribution_is_installed():
    assert installed("opencv-python-headless")
    for other in ("opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless"):
        assert not installed(other), f"{other} is installed next to opencv-python-headless"


def test_mmengine_module_comes_from_mmengine_lite():
    assert installed("mmengine-lite")
    assert not installed("mmengine")
    assert metadata.packages_distributions()["mmengine"] == ["mmengine-lite"]


def test_cv2_is_the_headless_distributions_file():
    headless = metadata.distribution("opencv-python-headless")
    owned = {Path(headless.locate_file(f)).resolve() for f in headless.files}
    assert Path(cv2.__file__).resolve() in owned
    assert metadata.packages_distributions()["cv2"] == ["opencv-python-headless"]
    assert cv2.__version__.split(".")[0] == metadata.version("opencv-python-headless").split(".")[0]


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
