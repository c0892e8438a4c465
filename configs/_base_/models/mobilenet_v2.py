# MobileNetV2 1.0 image classifier (paper Table 2): 3,504,872 parameters at 1000 classes.
# The head reads the backbone's final_conv (its class default); channel counts come
# from the backbone's feature_info, never from here.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="MobileNetV2", width_mult=1.0),
    heads=dict(
        classification=dict(
            type="ClassifierHead", num_classes=1000, dropout=0.2, label_smoothing=0.0
        ),
    ),
    data_preprocessor=dict(type="DataPreprocessor", channels_last=True),
    channels_last=True,
)
