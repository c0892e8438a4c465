"""High-level entry points for users: predicting on their own images, and writing a picture
and a JSON file per image (what ``tools/predict.py`` does)."""

from mtvision.apis.inferencer import Inferencer
from mtvision.apis.prediction_files import PredictionRun, collect_images, predict_to_files

__all__ = ["Inferencer", "PredictionRun", "collect_images", "predict_to_files"]
