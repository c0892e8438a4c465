"""Pictures of predictions: drawing primitives (boxes, masks, top-k), image encoders and
training curves. Below the task adapters (``mtvision.tasks`` draws through these); the
hook behind ``eval.py --show-dir`` is :mod:`mtvision.engine.show_predictions_hook`."""

from mtvision.visualization.draw import draw_detections, draw_segmentation, draw_topk

__all__ = ["draw_detections", "draw_segmentation", "draw_topk"]
