# Demo: MobileNetV2 classifier trained from scratch on the synthetic "shapes"
# set in ImageNet class-folder layout (written by tools/make_demo_data.py).
# Sized for 2 CPU cores: width 0.5 at 64x64 px, AdamW, one-cycle schedule.
#   make demo    (or: python tools/train.py configs/demo/mobilenetv2_shapes.py)
_base_ = ["../_base_/models/mobilenet_v2.py", "../_base_/default_runtime.py"]

data_root = "data/demo/imagenet"
input_size = 64

model = dict(
    backbone=dict(width_mult=0.5),
    head=dict(num_classes=6, dropout=0.1),
    label_smoothing=0.1,
)

train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            # Mild crops: the label is the largest shape, a tight crop could cut it out.
            dict(type="RandomResizedCrop", size=(input_size, input_size), scale=(0.6, 1.0)),
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
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type="ImageNetFolder", data_root=data_root, split="train", pipeline=train_pipeline
    ),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type="ImageNetFolder",
        data_root=data_root,
        split="val",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="TopKAccuracy", topk=(1, 5))
test_evaluator = val_evaluator

max_epochs = 16
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.05))
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
