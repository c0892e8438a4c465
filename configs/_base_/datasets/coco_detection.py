# COCO 2017 detection in its standard layout:
#   data/coco/annotations/instances_{train,val}2017.json
#   data/coco/{train,val}2017/*.jpg
# SSD augmentation (photometric distortion, zoom out, min-IoU crop, flip) and a
# plain resize to input_size x input_size; evaluation resizes the whole image and
# the model maps its boxes back to the original image.
dataset_type = "CocoDetection"
data_root = "data/coco/"
input_size = 320
mean_rgb = (123.675, 116.28, 103.53)

train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            # mmdet's PhotoMetricDistortion: brightness +-32, then contrast 0.5-1.5
            # before or after saturation 0.5-1.5 and hue +-18 degrees, channel swap.
            dict(
                type="RandomBrightnessContrast", brightness_limit=32 / 255, contrast_limit=0, p=0.5
            ),
            dict(
                type="OneOf",
                p=1.0,
                transforms=[
                    dict(
                        type="Sequential",
                        p=1.0,
                        transforms=[
                            dict(
                                type="RandomBrightnessContrast",
                                brightness_limit=0,
                                contrast_limit=0.5,
                                p=0.5,
                            ),
                            dict(
                                type="ColorJitter",
                                brightness=0,
                                contrast=0,
                                saturation=(0.5, 1.5),
                                hue=0,
                                p=0.5,
                            ),
                            dict(
                                type="ColorJitter",
                                brightness=0,
                                contrast=0,
                                saturation=0,
                                hue=18 / 360,
                                p=0.5,
                            ),
                        ],
                    ),
                    dict(
                        type="Sequential",
                        p=1.0,
                        transforms=[
                            dict(
                                type="ColorJitter",
                                brightness=0,
                                contrast=0,
                                saturation=(0.5, 1.5),
                                hue=0,
                                p=0.5,
                            ),
                            dict(
                                type="ColorJitter",
                                brightness=0,
                                contrast=0,
                                saturation=0,
                                hue=18 / 360,
                                p=0.5,
                            ),
                            dict(
                                type="RandomBrightnessContrast",
                                brightness_limit=0,
                                contrast_limit=0.5,
                                p=0.5,
                            ),
                        ],
                    ),
                ],
            ),
            dict(type="ChannelShuffle", p=0.5),
            dict(type="ZoomOut", ratio_range=(1.0, 4.0), fill=mean_rgb, p=0.5),
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
    batch_size=24,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
        filter_empty=True,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="annotations/instances_val2017.json",
        data_prefix=dict(img="val2017/"),
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoMetric", ann_file=data_root + "annotations/instances_val2017.json")
test_evaluator = val_evaluator
