"""Held-out real photos for int8 calibration in the real-data tests (``../shared/realdata``).

One calibration set per network, shared by the LiteRT, ExecuTorch and ONNX int8 tests, and
never containing a photo the test scores:

- the ImageNet classifier is scored on the 14 photos of ``coral_mobilenetv2_tflite/images``;
  it is calibrated on :func:`classifier_calibration_photos`: the 74 balloon photos, the 8
  COCO photos of ``coco8``, the 10 VOC detection photos and the 14 VOC segmentation crops
  (106 photos, none of the 14);
- the VOC DeepLab is scored on the 14 VOC segmentation crops; it is calibrated on
  :func:`segmentation_calibration_photos`: balloon, COCO and VOC detection photos, never
  the crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

VOC_SEGMENTATION = "voc2012_seg_samples_vainf/VOCdevkit/VOC2012"


def _detection_photos(realdata: Path) -> list[Path]:
    photos = sorted((realdata / "balloon/coco").glob("*/*.jpg"))  # train and val
    photos += sorted((realdata / "coco8/coco").glob("*/*.jpg"))
    photos += sorted((realdata / "voc_detection_samples/VOCdevkit").glob("*/JPEGImages/*.jpg"))
    assert len(photos) == 92, len(photos)
    return photos


def classifier_calibration_photos(realdata: Path) -> list[Path]:
    """106 real photos the classifier tests never score (see the module docstring)."""
    crops = sorted((realdata / VOC_SEGMENTATION / "JPEGImages").glob("*.jpg"))
    assert len(crops) == 14, len(crops)
    return _detection_photos(realdata) + crops


def segmentation_calibration_photos(realdata: Path, count: int | None = None) -> list[Path]:
    """Real photos other than the 14 VOC crops the segmentation tests score; ``count``:
    an evenly spread subset (a 513x513 calibration image costs a full float pass)."""
    photos = _detection_photos(realdata)
    if count is not None:
        photos = [photos[i] for i in np.linspace(0, len(photos) - 1, count).round().astype(int)]
    return photos


def photo_folder(root: Path, photos) -> str:
    """An ImageNet-layout folder (``root/val/all/``) of links to ``photos``: the
    classifier config's test dataset reads it through its test pipeline."""
    folder = root / "val" / "all"
    folder.mkdir(parents=True)
    for index, photo in enumerate(photos):
        (folder / f"{index:03d}_{photo.name}").symlink_to(photo)
    return str(root)


def pipeline_images(config: str, photos, root: Path) -> list[torch.Tensor]:
    """``photos`` through ``config``'s test pipeline (classifier configs): uint8 (3, H, W)."""
    from mmengine.registry import init_default_scope

    from mtvision.engine import load_config
    from mtvision.registry import DATASETS

    cfg = load_config(config)
    init_default_scope("mtvision")
    dataset = DATASETS.build(
        {**cfg.test_dataloader.dataset, "data_root": photo_folder(root, photos)}
    )
    return [dataset[i]["inputs"] for i in range(len(dataset))]


def resized_images(photos, size: int) -> list[torch.Tensor]:
    """``photos`` as RGB, PIL-bilinear resized to ``size`` x ``size``: uint8 (3, H, W)."""
    return [
        torch.from_numpy(
            np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
        )
        .permute(2, 0, 1)
        .contiguous()
        for p in photos
    ]
