# One MobileNetV2 1.0, run once per batch, feeding three heads: an ImageNet
# classifier (final_conv), an SSDLite detector for COCO (layer15_expansion +
# final_conv, four extra layers) and a DeepLabv3 on-device segmenter for VOC
# (stage7). 5,919,858 parameters. Any subset of heads works: delete one with
# `heads=dict(_delete_=True, ...)` in a derived config, or build
# create_model("mobilenet_v2_multitask", num_classes=dict(detection=80, segmentation=21)).
# Output stride 32 keeps SSDLite's layout; 16 gives DeepLab its paper stride (the
# SSDLite maps become 20, 20, 10, 5, 3, 2 at 320x320).
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="MobileNetV2", width_mult=1.0, output_stride=32),
    heads=dict(
        classification=dict(type="ClassifierHead", num_classes=1000),
        detection=dict(type="SSDLiteHead", num_classes=80),
        segmentation=dict(type="DeepLabV3Head", num_classes=21),
    ),
    # Each head's losses are multiplied by its weight before mmengine sums them.
    loss_weights=dict(classification=1.0, detection=1.0, segmentation=1.0),
    data_preprocessor=dict(type="DataPreprocessor"),
)
