# DeepLabv3+ MobileNetV2 fine-tuned from Google's MLPerf ADE20K DeepLabv3+ (its backbone,
# converted from the int8 TFLite file) on your own folder in PASCAL VOC layout:
#   DATA_ROOT/JPEGImages/<id>.jpg, DATA_ROOT/SegmentationClass/<id>.png (index PNGs,
#   255 = ignore), DATA_ROOT/ImageSets/Segmentation/{train,val}.txt
# 1. Convert the weights once (pip install -e '.[tflite]'; docs/pretrained.md):
#   python tools/convert_weights.py deeplabv3_mnv2_ade20k_int8.tflite \
#       --config configs/pretrained/deeplabv3plus_tflite_ade20k.py \
#       --out work_dirs/pretrained/deeplabv3plus_ade20k.pth
# 2. Fine-tune (50 iterations of 4 crops of 257x257):
#   DATA_ROOT=/path/to/VOC2012 python tools/train.py configs/finetune/deeplabv3plus_voc_folder.py
#   your own classes: --cfg-options model.heads.segmentation.num_classes=3
#       "train_dataloader.dataset.classes=['background','a','b']" (and the same for val)
# What the converted backbone needs (docs/pretrained.md, "Fine-tuning"): frozen BatchNorm
# statistics (norm_eval=True: they hold folded weights), TF's "SAME" padding and inputs
# scaled to [-1, 1]; a backbone learning rate of 0.1x the head's. The head (ASPP,
# decoder, classifier) starts from scratch: its class count is the folder's, not ADE's.
_base_ = [
    "../_base_/models/deeplabv3plus_mobilenet_v2.py",
    "../_base_/datasets/voc_segmentation.py",
    "../_base_/default_runtime.py",
]

data_root = "{{$DATA_ROOT:data/VOCdevkit/VOC2012}}"
pretrained = "work_dirs/pretrained/deeplabv3plus_ade20k.pth"
crop_size = 257
tf_mean = (127.5, 127.5, 127.5)

model = dict(
    backbone=dict(
        padding="same",
        norm_eval=True,
        init_cfg=dict(type="Pretrained", checkpoint=pretrained, prefix="backbone."),
    ),
    heads=dict(segmentation=dict(padding="same")),
    data_preprocessor=dict(mean=tf_mean, std=tf_mean),
)

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="RandomScale", scale_limit=(-0.5, 0.25), mask_interpolation=0, p=1.0),
            dict(
                type="PadIfNeeded",
                min_height=crop_size,
                min_width=crop_size,
                position="top_left",
                border_mode=0,
                fill=tf_mean,
                fill_mask=255,
            ),
            dict(type="RandomCrop", height=crop_size, width=crop_size),
            dict(type="HorizontalFlip", p=0.5),
        ],
    ),
    dict(type="PackInputs"),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, split="train", pipeline=train_pipeline),
)
val_dataloader = dict(num_workers=1, dataset=dict(data_root=data_root, split="val"))
test_dataloader = val_dataloader

max_iters = 50
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=5),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=5, end=max_iters, eta_min=1e-5),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1),
)
log_processor = dict(by_epoch=False)
