# Demo: SSDLite-MobileNetV2 trained from scratch on the synthetic "shapes" set in
# COCO layout (written by tools/make_demo_data.py: 3,000 train / 300 val images,
# 6 classes with non-contiguous category ids, objects from a few px to most of the
# image). Sized for 2 CPU cores and under 10 minutes of training: width 0.5 at
# 160x160, output stride 16, 7 epochs of batch 16, flips only (the full SSD
# augmentation pays off over hundreds of epochs, not 7), AdamW with warm-up and
# cosine decay. Output stride 16 (the last stages dilated: SSDLite's second map is
# 10x10 instead of 5x5 at 160x160) doubled AP@.5 over the paper's 32 at about the
# same training time. Measured alternatives and the learning curve: docs/results.md.
#   make demo    (or: python tools/train.py configs/demo/ssdlite_shapes.py)
_base_ = [
    "../_base_/models/ssdlite_mobilenet_v2.py",
    "../_base_/datasets/coco_detection.py",
    "../_base_/default_runtime.py",
]

data_root = "data/demo/coco/"
input_size = 160

model = dict(
    backbone=dict(width_mult=0.5, output_stride=16),
    heads=dict(detection=dict(num_classes=6)),
    data_preprocessor=dict(channels_last=True),
    channels_last=True,
)

train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
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
    batch_size=16,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/instances_val2017.json")
test_evaluator = val_evaluator

max_epochs = 7
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=3e-3, weight_decay=0.01))
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
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
)
