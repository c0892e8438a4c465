"""High-level entry points for users: predicting on their own images."""

from mtvision.apis.inferencer import Inferencer

__all__ = ["Inferencer"]
