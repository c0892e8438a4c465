from mtvision.models.data_preprocessor import MTDataPreprocessor
from mtvision.models.factory import create_model, list_models, register_model
from mtvision.models.image_classifier import ImageClassifier

__all__ = ["ImageClassifier", "MTDataPreprocessor", "create_model", "list_models", "register_model"]
