from mtvision.evaluation.coco_metric import CocoMetric
from mtvision.evaluation.miou_metric import MeanIoU
from mtvision.evaluation.topk_accuracy import TopKAccuracy
from mtvision.evaluation.voc_map import VOCMeanAP

__all__ = ["CocoMetric", "MeanIoU", "TopKAccuracy", "VOCMeanAP"]
