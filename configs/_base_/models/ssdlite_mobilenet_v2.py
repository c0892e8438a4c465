# SSDLite-MobileNetV2 (paper section 6.2) for COCO's 80 classes: 4,337,013 parameters.
# Predictions on the backbone's layer-15 expansion (576 ch, stride 16) and final
# 1x1 conv (1280 ch, stride 32), the head's default in_features, then four extra
# layers of depth 512/256/256/128; channel counts come from the backbone's
# feature_info, never from here.
model = dict(
    type="MultiTaskModel",
    backbone=dict(type="MobileNetV2", width_mult=1.0),
    heads=dict(
        detection=dict(
            type="SSDLiteHead",
            num_classes=80,
            # The TF object detection API's anchors (scales 0.2-0.95, ratios 1, 2, 1/2, 3,
            # 1/3 + interpolated 1:1, 3 boxes on the lowest layer); torchvision's and
            # mmdet's variant: dict(type="DefaultBoxGenerator").
            anchor_generator=dict(type="SSDAnchorGenerator"),
            box_coder_weights=(10.0, 10.0, 5.0, 5.0),
            iou_threshold=0.5,
            cls_loss="softmax",  # 3:1 hard negative mining; "focal" for sigmoid focal loss
            neg_pos_ratio=3,
            test_cfg=dict(score_threshold=0.01, nms_iou_threshold=0.6, max_detections=100),
        ),
    ),
    # TF's batch-norm decay 0.97 = PyTorch momentum 0.03 (torchvision's and mmdet's
    # recipe), on every BatchNorm of the model, backbone included.
    bn_eps=1e-3,
    bn_momentum=0.03,
    data_preprocessor=dict(type="DataPreprocessor"),
)
