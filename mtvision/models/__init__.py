"""The composing model, the named models and the data preprocessor."""

from mtvision.models import (  # noqa: F401 (builders)
    deeplabv3,
    deeplabv3plus,
    image_classifier,
    multitask,
    ssdlite,
)
from mtvision.models.data_preprocessor import DataPreprocessor
from mtvision.models.multi_task_model import MultiTaskModel
from mtvision.models.named_models import create_model, list_models, register_model

__all__ = [
    "DataPreprocessor",
    "MultiTaskModel",
    "create_model",
    "list_models",
    "register_model",
]
