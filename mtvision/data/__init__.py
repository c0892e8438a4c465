"""Datasets, transforms and collation.

Importing this package registers ``ImageNetFolder`` (DATASETS), ``LoadImage``,
``Albumentations``, ``PackInputs`` (TRANSFORMS) and ``collate_samples``
(FUNCTIONS) in mtvision's registries.
"""

from mtvision.data.base_dataset import MTBaseDataset
from mtvision.data.collate import collate_samples
from mtvision.data.image_io import ImageLoadError, decode_image, load_image
from mtvision.data.imagenet import IMAGE_EXTENSIONS, ImageNetFolder
from mtvision.data.transforms import Albumentations, LoadImage, PackInputs

__all__ = [
    "IMAGE_EXTENSIONS",
    "Albumentations",
    "ImageLoadError",
    "ImageNetFolder",
    "LoadImage",
    "MTBaseDataset",
    "PackInputs",
    "collate_samples",
    "decode_image",
    "load_image",
]
