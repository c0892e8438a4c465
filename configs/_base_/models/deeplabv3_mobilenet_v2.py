# DeepLabv3 on MobileNetV2 1.0 (MobileNetV2 paper, section 6.3, Table 7): output
# stride 16 (the last stride-2 stage dilated instead of strided), head on the
# 320-channel stage7 map (the head's default in_features; the backbone keeps no
# module after it), and the paper's on-device head: no atrous branches, only an
# image-pooling branch and a 1x1 branch (256 channels each, BN, ReLU), concat, 1x1
# projection. Paper: 75.32 mIoU on VOC 2012 val, 2.11M params (2,113,557 here),
# 2.75B MAdds at 513x513 (COCO-pretrained, trained on train_aug); aspp=True: 75.70,
# 4.52M, 5.8B.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="MobileNetV2", width_mult=1.0, output_stride=16),
    heads=dict(
        segmentation=dict(
            type="DeepLabV3Head",
            num_classes=21,
            channels=256,
            aspp=False,
            dropout=0.1,  # TF-DeepLab: keep_prob 0.9 before the classifier
            ignore_index=255,
            # Single-scale test; the paper's 77.33 (OS 8, scales 0.5-1.75, flip) is
            # test_cfg=dict(scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True).
            test_cfg=dict(scales=(1.0,), flip=False),
        ),
    ),
    data_preprocessor=dict(type="DataPreprocessor"),
)
