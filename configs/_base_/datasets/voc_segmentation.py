# PASCAL VOC 2012 segmentation (layout: mtvision/data/voc_segmentation.py). Training
# on the SBD-augmented train_aug list (10,582 images; masks in SegmentationClassAug),
# evaluation on val (1,449 images) at each image's own size.
dataset_type = "VOCSegmentation"
data_root = "data/VOCdevkit/VOC2012"
crop_size = 513
# ImageNet mean in RGB 0-255: padded pixels normalise to about 0 in the preprocessor.
mean_fill = (124, 116, 104)

# TF-DeepLab's augmentation (plus colour jitter): random scale 0.5-2.0, pad to the
# crop (image: mean, mask: 255 = ignore), random 513x513 crop, horizontal flip.
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(
        type="Albumentations",
        transforms=[
            # Before any padding, so padded pixels keep the mean colour.
            dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
            # scale_limit is added to 1: factors 0.5-2.0. Masks are resampled with
            # nearest neighbour (mask_interpolation=0, cv2.INTER_NEAREST): class ids
            # must never be blended into other ids.
            dict(type="RandomScale", scale_limit=(-0.5, 1.0), mask_interpolation=0, p=1.0),
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
# No resize: whole images at their own size (meta["img_shape"] = the loaded size,
# which the model uses to cut the batch padding away again).
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
    dataset=dict(
        type=dataset_type, data_root=data_root, split="train_aug", pipeline=train_pipeline
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type=dataset_type, data_root=data_root, split="val", pipeline=test_pipeline, test_mode=True
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="MeanIoU")
test_evaluator = val_evaluator
