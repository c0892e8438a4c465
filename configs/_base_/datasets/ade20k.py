# ADE20K SceneParsing (ADEChallengeData2016, layout: mtvision/data/ade20k.py): 150 classes,
# annotation 0 ("other") ignored, training on the 20,210 training images, evaluation on
# the 2,000 validation images at their own size (mIoU over 150 classes).
dataset_type = "ADE20KSegmentation"
data_root = "data/ADEChallengeData2016"
crop_size = 512
mean_fill = (124, 116, 104)

# mmseg's ADE20K augmentation (configs/_base_/datasets/ade20k.py): random scale 0.5-2.0 of
# a 2048x512 frame, 512x512 crop, flip, photometric jitter.
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
            dict(type="LongestMaxSize", max_size=crop_size, mask_interpolation=0),
            dict(type="RandomScale", scale_limit=(-0.5, 1.0), mask_interpolation=0, p=1.0),
            dict(
                type="PadIfNeeded",
                min_height=crop_size,
                min_width=crop_size,
                position="top_left",
                border_mode=0,
                fill=mean_fill,
                fill_mask=255,
            ),
            dict(type="RandomCrop", height=crop_size, width=crop_size),
            dict(type="HorizontalFlip", p=0.5),
        ],
    ),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(type=dataset_type, data_root=data_root, split="training", pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split="validation",
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="MeanIoU")
test_evaluator = val_evaluator
