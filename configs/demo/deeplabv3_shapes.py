# Demo: DeepLabv3 + MobileNetV2 (OS 16, on-device head) trained from scratch on the
# synthetic "shapes" set in VOC layout (written by tools/make_demo_data.py): 7 classes,
# background + 6 shapes, 3,000 training images of 96-192 px, evaluated on the 300 val
# images at their own size. Sized for 2 CPU cores: width 0.5, 128x128 crops of images
# scaled 0.75-1.25, batch 16, 1,200 iterations (6.4 epochs), AdamW with a short
# warm-up and poly decay (from scratch, like the classification demo).
#   python tools/make_demo_data.py --out data/demo --seed 0 --num-train 3000 --num-val 300
#   python tools/train.py configs/demo/deeplabv3_shapes.py
#   python tools/eval.py configs/demo/deeplabv3_shapes.py work_dirs/deeplabv3_shapes/last.pth
_base_ = [
    "../_base_/models/deeplabv3_mobilenet_v2.py",
    "../_base_/datasets/voc_segmentation.py",
    "../_base_/default_runtime.py",
]

data_root = "data/demo/VOCdevkit/VOC2012"
# mtvision.synthetic.shapes.SHAPE_CLASSES after background; mask value = index.
classes = ("background", "circle", "square", "triangle", "star", "cross", "hexagon")
crop_size = 128
mean_fill = (124, 116, 104)  # ImageNet mean, RGB
max_iters = 1200

model = dict(
    backbone=dict(width_mult=0.5),
    heads=dict(segmentation=dict(num_classes=len(classes))),
    data_preprocessor=dict(channels_last=True),
    channels_last=True,
)

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
            # Nearest-neighbour masks (mask_interpolation=0): class ids are never blended.
            dict(type="RandomScale", scale_limit=(-0.25, 0.25), mask_interpolation=0, p=1.0),
            dict(
                type="PadIfNeeded",
                min_height=crop_size,
                min_width=crop_size,
                position="top_left",
                border_mode=0,  # cv2.BORDER_CONSTANT
                fill=mean_fill,
                fill_mask=255,
            ),
            dict(type="RandomCrop", height=crop_size, width=crop_size),
            dict(type="HorizontalFlip", p=0.5),
        ],
    ),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    dataset=dict(data_root=data_root, split="train", classes=classes, pipeline=train_pipeline),
)
# Whole images at their own size (the base's test_pipeline); the model cuts each
# image out of the padded batch before it runs.
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, classes=classes),
)
test_dataloader = val_dataloader

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=4e-3, weight_decay=1e-4),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.05, by_epoch=False, begin=0, end=50),
    dict(type="PolyLR", power=0.9, eta_min=0.0, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1),
)
log_processor = dict(by_epoch=False)
