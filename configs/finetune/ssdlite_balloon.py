# SSDLite-MobileNetV2 1.0 fine-tuned from Google's ImageNet MobileNetV2 on a small real
# detection set in COCO layout: the balloon photos (61 train / 13 val, one class), or
# your own folder of the same layout:
#   DATA_ROOT/annotations/instances_train.json, DATA_ROOT/annotations/instances_val.json,
#   DATA_ROOT/train/*.jpg, DATA_ROOT/val/*.jpg
# 1. Convert the ImageNet weights once (pip install -e '.[tflite]'; docs/pretrained.md):
#   python tools/convert_weights.py mobilenet_v2_1.0_224_quant.tflite \
#       --out work_dirs/pretrained/mobilenet_v2_1.0_224_quant.pth
# 2. Fine-tune (400 iterations, about 6.5 minutes on 2 CPU cores; docs/results.md):
#   DATA_ROOT=/path/to/balloon/coco python tools/train.py configs/finetune/ssdlite_balloon.py
#   your own classes:  DATA_ROOT=/path/to/mine python tools/train.py configs/finetune/ssdlite_balloon.py \
#       --cfg-options model.heads.detection.num_classes=3
# What the converted backbone needs, and why (docs/pretrained.md, "Fine-tuning"):
# - its BatchNorms hold folded weights, exact in eval mode only: norm_eval=True keeps
#   their statistics frozen (the affine weights still train);
# - inputs scaled as TF-slim does, (x - 127.5) / 127.5, and TF's "SAME" padding;
# - a backbone learning rate of 0.1x the head's: at the head's rate AdamW wrecked
#   the pretrained features (every final unit at 0 or 6) in a trial.
_base_ = [
    "../_base_/models/ssdlite_mobilenet_v2.py",
    "../_base_/datasets/coco_detection.py",
    "../_base_/default_runtime.py",
]

data_root = "{{$DATA_ROOT:data/balloon/coco}}/"
pretrained = "work_dirs/pretrained/mobilenet_v2_1.0_224_quant.pth"
input_size = 320
tf_mean = (127.5, 127.5, 127.5)

model = dict(
    backbone=dict(
        width_mult=1.0,
        padding="same",
        norm_eval=True,
        init_cfg=dict(type="Pretrained", checkpoint=pretrained),
    ),
    heads=dict(detection=dict(num_classes=1, padding="same")),
    data_preprocessor=dict(mean=tf_mean, std=tf_mean, channels_last=True),
    channels_last=True,
)

# SSD's augmentation, lighter: mild colour changes, zoom out up to 2x, min-IoU crops, flips.
train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            # The photos are up to 1024 px; everything after this is 4x cheaper at 512.
            dict(type="LongestMaxSize", max_size=512),
            dict(
                type="RandomBrightnessContrast",
                brightness_limit=32 / 255,
                contrast_limit=0.25,
                p=0.5,
            ),
            dict(type="ColorJitter", brightness=0, contrast=0, saturation=0.25, hue=0.03, p=0.5),
            dict(type="ZoomOut", ratio_range=(1.0, 2.0), fill=tf_mean, p=0.3),
            dict(
                type="MinIoURandomCrop",
                min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
                min_crop_size=0.3,
                aspect_ratio_range=(0.5, 2.0),
            ),
            dict(type="HorizontalFlip", p=0.5),
            dict(type="Resize", height=input_size, width=input_size),
        ],
    ),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations", transforms=[dict(type="Resize", height=input_size, width=input_size)]
    ),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        ann_file="annotations/instances_train.json",
        data_prefix=dict(img="train/"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        ann_file="annotations/instances_val.json",
        data_prefix=dict(img="val/"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/instances_val.json")
test_evaluator = val_evaluator

# 50 epochs of 8 iterations on the balloon set: 400 iterations, 40 of them warm-up.
max_epochs = 50
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=4e-3, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
param_scheduler = [
    dict(
        type="LinearLR",
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True,
    ),
    dict(
        type="CosineAnnealingLR",
        by_epoch=True,
        begin=5,
        end=max_epochs,
        eta_min=1e-5,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

default_hooks = dict(
    logger=dict(interval=8),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
)
