# Demo: one MobileNetV2 (width 0.5) trained jointly, from scratch, for classification,
# detection and segmentation on the synthetic "shapes" set: JoinedDataset joins the
# COCO, ImageNet and VOC layouts by image, so every training sample carries a label,
# boxes and a mask (docs/multitask.md). 160x160, batch 16, AdamW with warm-up and cosine
# decay, 6 epochs (about 9.5 minutes on 2 cores). Output stride 16 (the base's
# default): at about equal training time it beat 32 on every head (docs/results.md,
# "Output stride"). Validated on the 300 val images by the three metrics.
#   make demo-multitask
_base_ = [
    "../_base_/models/multitask_mobilenet_v2.py",
    "../_base_/datasets/multitask_shapes.py",
    "../_base_/default_runtime.py",
]

max_epochs = 6

model = dict(
    backbone=dict(width_mult=0.5),
    heads=dict(
        classification=dict(num_classes=6),
        detection=dict(num_classes=6),
        segmentation=dict(num_classes=7),
    ),
    data_preprocessor=dict(channels_last=True),
    channels_last=True,
)

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
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=2)

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
)
