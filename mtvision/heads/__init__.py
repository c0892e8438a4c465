"""Task heads: each is built from the backbone's FeatureSpecs and owns forward, loss and predict."""

from mtvision.heads.base import Head
from mtvision.heads.classifier_head import ClassifierHead
from mtvision.heads.deeplabv3_head import DeepLabV3Head
from mtvision.heads.deeplabv3plus_head import DeepLabV3PlusHead
from mtvision.heads.ssdlite_extras import SSDLiteExtras
from mtvision.heads.ssdlite_head import SSDLiteHead
from mtvision.heads.ssdlite_predictors import SSDLitePredictors

__all__ = [
    "ClassifierHead",
    "Head",
    "DeepLabV3Head",
    "DeepLabV3PlusHead",
    "SSDLiteExtras",
    "SSDLiteHead",
    "SSDLitePredictors",
]
