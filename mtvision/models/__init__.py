from mtvision.models.data_preprocessor import DataPreprocessor
from mtvision.models.factory import create_model, list_models, register_model
from mtvision.models.image_classifier import ImageClassifier
from mtvision.models.segmentor import Segmentor
from mtvision.models.ssdlite import SSDLite

__all__ = [
    "ImageClassifier",
    "DataPreprocessor",
    "SSDLite",
    "Segmentor",
    "create_model",
    "list_models",
    "register_model",
]
