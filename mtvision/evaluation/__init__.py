from mtvision.evaluation.topk_accuracy import TopKAccuracy

__all__ = ["TopKAccuracy"]
