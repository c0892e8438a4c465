# Demo: MobileNetV2 classifier trained from scratch on the synthetic "shapes"
# set in ImageNet class-folder layout (written by tools/make_demo_data.py).
# Sized for 2 CPU cores (4 minutes of training): width 0.5 at 64x64 px, 16 epochs
# of 3,000 images, AdamW with warm-up and cosine decay. A from-scratch
# MobileNetV2 underfits in so few steps, so regularisation is off (no label
# smoothing, no dropout, light weight decay, no crops). With more time, the
# paper's width 1.0 learns more per image: --cfg-options
# model.backbone.width_mult=1.0 (measured alternatives in docs/results.md).
#   make demo    (or: python tools/train.py configs/demo/mobilenetv2_shapes.py)
_base_ = [
    "../_base_/models/mobilenet_v2.py",
    "../_base_/datasets/imagenet.py",
    "../_base_/default_runtime.py",
]

data_root = "data/demo/imagenet"
input_size = 64

model = dict(
    backbone=dict(width_mult=0.5),
    heads=dict(classification=dict(num_classes=6, dropout=0.0, label_smoothing=0.0)),
)

train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="Resize", height=input_size, width=input_size),
            dict(type="HorizontalFlip", p=0.5),
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
    batch_size=32,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline),
)
test_dataloader = val_dataloader

max_epochs = 16
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=4e-3, weight_decay=0.01))
param_scheduler = [
    dict(
        type="LinearLR",
        start_factor=0.05,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True,
    ),
    dict(
        type="CosineAnnealingLR",
        by_epoch=True,
        begin=1,
        end=max_epochs,
        eta_min=1e-5,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=4)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=4, max_keep_ckpts=1),
)
