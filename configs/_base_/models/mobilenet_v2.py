# MobileNetV2 1.0 image classifier (paper Table 2): 3,504,872 parameters at 1000 classes.
model = dict(
    type="ImageClassifier",
    backbone=dict(type="MobileNetV2", width_mult=1.0),
    head=dict(type="ClassifierHead", in_feature="final_conv", num_classes=1000, dropout=0.2),
    label_smoothing=0.0,
    data_preprocessor=dict(type="DataPreprocessor", channels_last=True),
    channels_last=True,
)
