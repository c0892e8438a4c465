"""Pictures of predictions: drawing boxes and masks, and the hook behind ``eval.py --show-dir``.

Importing this package registers ``ShowPredictionsHook`` (HOOKS).
"""

from mtvision.visualization.draw import draw_detections, draw_segmentation, draw_topk
from mtvision.visualization.show_predictions_hook import ShowPredictionsHook

__all__ = ["ShowPredictionsHook", "draw_detections", "draw_segmentation", "draw_topk"]
