"""Tiny models and images for the inferencer and predict tests: the demo configs' networks
with seeded random weights saved as checkpoints, textured and EXIF-rotated pictures."""

import numpy as np
import torch
from mmengine.registry import init_default_scope
from PIL import Image

from mtvision.data.image_io import load_image
from mtvision.engine import load_config
from mtvision.registry import MODELS
from mtvision.utils.parity import randomize_batch_norms_

DETECTOR = "configs/demo/ssdlite_shapes.py"
CLASSIFIER = "configs/demo/mobilenetv2_shapes.py"
SEGMENTER = "configs/demo/deeplabv3_shapes.py"
MULTITASK = "configs/demo/multitask_shapes.py"
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
EXIF_ROTATED_90_CW = 6  # stored pixels must be turned 90 degrees clockwise to be upright


def save_random_checkpoint(config: str, path, dataset_meta: dict | None = None, seed: int = 0):
    """The config's model with seeded random weights, saved as a checkpoint; returns the model."""
    cfg = load_config(config)
    init_default_scope("mtvision")
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    with torch.no_grad():  # fresh BatchNorms give near-constant outputs: give them statistics
        randomize_batch_norms_(model, seed=seed, input_size=64)
    meta = {} if dataset_meta is None else {"dataset_meta": dataset_meta}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return model


def write_exif_rotated_jpeg(path, stored: np.ndarray) -> np.ndarray:
    """Save ``stored`` (H, W, 3) with EXIF orientation 6; returns the upright picture."""
    exif = Image.Exif()
    exif[0x0112] = EXIF_ROTATED_90_CW
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    return load_image(path)


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour blobs: a network's outputs vary over it (unlike on noise or a flat colour)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))
