"""Datasets, transforms and collation.

Importing this package registers ``ImageNetFolder``, ``CocoDetection``,
``VOCDetection``, ``VOCSegmentation``, ``ADE20KSegmentation``, ``JoinedDataset``, ``TaskConcatDataset``
(DATASETS), ``LoadImage``, ``LoadMask``, ``Albumentations``, ``PackInputs``
(TRANSFORMS), ``PerTaskSampler``, ``TaskQuotaBatchSampler`` (DATA_SAMPLERS)
and ``collate_samples`` (FUNCTIONS) in mtvision's registries.
"""

from mtvision.data.ade20k import ADE20K_CLASSES, ADE20KSegmentation
from mtvision.data.base_dataset import BaseDataset
from mtvision.data.coco_detection import CocoDetection
from mtvision.data.collate import collate_samples
from mtvision.data.image_io import ImageLoadError, decode_image, load_image
from mtvision.data.imagenet import IMAGE_EXTENSIONS, ImageNetFolder
from mtvision.data.joined_dataset import JoinedDataset
from mtvision.data.mask_io import LoadMask, MaskLoadError
from mtvision.data.ssd_transforms import MinIoURandomCrop, ZoomOut
from mtvision.data.task_concat_dataset import TaskConcatDataset
from mtvision.data.task_sampling import PerTaskSampler, TaskQuotaBatchSampler
from mtvision.data.transforms import Albumentations, LoadImage, PackInputs
from mtvision.data.voc_detection import VOC_DETECTION_CLASSES, VOCDetection
from mtvision.data.voc_segmentation import VOC_CLASSES, VOCSegmentation

__all__ = [
    "ADE20K_CLASSES",
    "ADE20KSegmentation",
    "IMAGE_EXTENSIONS",
    "VOC_CLASSES",
    "VOC_DETECTION_CLASSES",
    "Albumentations",
    "CocoDetection",
    "ImageLoadError",
    "ImageNetFolder",
    "JoinedDataset",
    "LoadImage",
    "LoadMask",
    "BaseDataset",
    "MaskLoadError",
    "MinIoURandomCrop",
    "PackInputs",
    "PerTaskSampler",
    "TaskConcatDataset",
    "TaskQuotaBatchSampler",
    "VOCDetection",
    "VOCSegmentation",
    "ZoomOut",
    "collate_samples",
    "decode_image",
    "load_image",
]
