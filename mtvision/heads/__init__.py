from mtvision.heads.classifier_head import ClassifierHead

__all__ = ["ClassifierHead"]
