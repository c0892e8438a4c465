"""The end-to-end benchmark's images: real photos of the real-data folder, else synthetic scenes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mtvision.data.image_io import load_image
from mtvision.synthetic.shapes import SHAPE_CLASSES, render_scene

REALDATA_ENV = "MTVISION_REALDATA"
#: Google's Coral MobileNetV2 folder of the real-data folder: test photos in ``images``,
#: int8 TFLite files in ``models`` (its README).
TFLITE_FOLDER = "coral_mobilenetv2_tflite"


def realdata_folder() -> Path | None:
    """``$MTVISION_REALDATA``, else ``<project>/../shared/realdata``; ``None`` when absent."""
    project = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get(REALDATA_ENV) or project.parent / "shared" / "realdata")
    return path if path.is_dir() else None


def benchmark_images(count: int, size: int) -> tuple[list[np.ndarray], str]:
    """``count`` uint8 RGB (size, size, 3) images and a line saying what they are.

    Real photos of the real-data folder (Coral's test photos, then the VOC
    crops), each resized to size x size, when it is there; else synthetic shapes
    scenes (the demo data's generator). The first is the timed image; all of
    them calibrate int8.
    """
    folder = realdata_folder()
    paths: list[Path] = []
    if folder is not None:
        for pattern in (
            f"{TFLITE_FOLDER}/images/*",
            "voc2012_seg_samples_vainf/VOCdevkit/VOC2012/JPEGImages/*",
        ):
            paths += sorted(
                path
                for path in folder.glob(pattern)
                if path.suffix.lower() in (".jpg", ".jpeg", ".png") and "mask" not in path.name
            )
    if paths:
        images = [
            cv2.resize(load_image(path), (size, size), interpolation=cv2.INTER_AREA)
            for path in paths[:count]
        ]
        return images, f"{len(images)} real photos from {folder}, resized to {size}x{size}"
    rng = np.random.default_rng(0)
    images = [
        render_scene(rng, size, size, index % len(SHAPE_CLASSES)).image for index in range(count)
    ]
    return images, f"{count} synthetic shapes scenes, {size}x{size} (no real-data folder)"
