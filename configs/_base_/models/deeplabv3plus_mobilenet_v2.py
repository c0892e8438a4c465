# DeepLabv3+ on MobileNetV2 1.0 (Chen et al., ECCV 2018, arXiv:1802.02611; TF-DeepLab's
# mobilenet_v2 model-zoo variant): output stride 16, encoder on the 320-channel stage7
# map, decoder on "layer4_depthwise" (144 channels at stride 4, TF-DeepLab's
# layer_4/depthwise_output). Encoder: the on-device ASPP (image pooling + 1x1, 256
# channels, 1x1 projection), as Google's MobileNetV2 DeepLabv3+ files (aspp=True adds
# plain 3x3 atrous branches). Decoder: 1x1 to 48 channels of the low-level map, concat
# with the 4x-upsampled encoder output, two depthwise-separable 3x3 convs of 256, 1x1
# logits. 21 classes: 2,271,109 parameters (docs/segmentation.md compares them).
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="MobileNetV2", width_mult=1.0, output_stride=16),
    heads=dict(
        segmentation=dict(
            type="DeepLabV3PlusHead",
            num_classes=21,
            in_features=("stage7", "layer4_depthwise"),  # (encoder tap, low-level tap)
            channels=256,
            aspp=False,
            low_level_channels=48,
            decoder_channels=256,
            dropout=0.1,
            ignore_index=255,
            test_cfg=dict(scales=(1.0,), flip=False),
        ),
    ),
    data_preprocessor=dict(type="DataPreprocessor"),
)
