# Multi-task data from three datasets, one per task, in their standard layouts:
#   data/coco/{annotations,train2017,val2017}   detection    (configs/_base_/datasets/coco_detection.py)
#   data/VOCdevkit/VOC2012                       segmentation (configs/_base_/datasets/voc_segmentation.py)
#   data/imagenet/{train,val}/<wnid>/            classification (configs/_base_/datasets/imagenet.py)
# Training interleaves them: TaskConcatDataset keeps each dataset with its own pipeline and
# label space; PerTaskSampler shuffles and shards each one on its own (seeded, per epoch,
# per process); TaskQuotaBatchSampler fills every batch with a fixed share of each task, so
# every optimiser step sees all three. An epoch ends when every image of every dataset has
# been drawn once (ImageNet, the largest, sets its length; COCO and VOC are repeated,
# reshuffled). Each sample carries only its own task's annotation: the model trains each
# head on the samples annotating it. Validation: one entry per dataset, each scored by its
# head's metric with only that head running (MultiTaskValLoop, docs/multitask.md).
# Data parts only: a recipe inheriting this file adds the multi-task model.
coco_root = "data/coco/"
voc_root = "data/VOCdevkit/VOC2012"
imagenet_root = "data/imagenet"
# One input size for the three tasks: the data preprocessor pads a batch to its largest
# image, and padding would leak into the classifier's global average pool.
input_size = 320
# ImageNet mean in RGB 0-255: padded pixels normalise to about 0 in the preprocessor.
mean_fill = (124, 116, 104)

classification_train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="RandomResizedCrop", size=(input_size, input_size)),
            dict(type="HorizontalFlip", p=0.5),
        ],
    ),
    dict(type="PackInputs"),
]
# SSD's geometric augmentation (the photometric part of the full recipe is in
# coco_detection.py): zoom out, min-IoU crop, flip, resize.
detection_train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="ZoomOut", ratio_range=(1.0, 4.0), fill=mean_fill, p=0.5),
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
# TF-DeepLab's scale / pad / crop / flip, cropped to the common input size.
segmentation_train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="RandomScale", scale_limit=(-0.5, 1.0), mask_interpolation=0, p=1.0),
            dict(
                type="PadIfNeeded",
                min_height=input_size,
                min_width=input_size,
                position="top_left",
                border_mode=0,  # cv2.BORDER_CONSTANT
                fill=mean_fill,
                fill_mask=255,
            ),
            dict(type="RandomCrop", height=input_size, width=input_size),
            dict(type="HorizontalFlip", p=0.5),
        ],
    ),
    dict(type="PackInputs"),
]

classification_test_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            # The usual 0.875 centre crop, at the training size.
            dict(type="SmallestMaxSize", max_size=round(input_size / 0.875)),
            dict(type="CenterCrop", height=input_size, width=input_size),
        ],
    ),
    dict(type="PackInputs"),
]
detection_test_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations", transforms=[dict(type="Resize", height=input_size, width=input_size)]
    ),
    dict(type="PackInputs"),
]
# Whole images at their own size, as the single-task segmentation recipe.
segmentation_test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=24,  # per process: 8 classification + 8 detection + 8 segmentation images
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="PerTaskSampler", shuffle=True),
    batch_sampler=dict(
        type="TaskQuotaBatchSampler",
        ratios=dict(classification=1, detection=1, segmentation=1),
    ),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type="TaskConcatDataset",
        datasets=dict(
            classification=dict(
                type="ImageNetFolder",
                data_root=imagenet_root,
                split="train",
                pipeline=classification_train_pipeline,
            ),
            detection=dict(
                type="CocoDetection",
                data_root=coco_root,
                ann_file="annotations/instances_train2017.json",
                data_prefix=dict(img="train2017/"),
                filter_empty=True,
                pipeline=detection_train_pipeline,
            ),
            segmentation=dict(
                type="VOCSegmentation",
                data_root=voc_root,
                split="train_aug",
                pipeline=segmentation_train_pipeline,
            ),
        ),
    ),
)

# Evaluation entries (MultiTaskValLoop): entry name -> dataloader, and in the evaluator
# entry name -> {head: metric}; only the heads named run on the entry's images.
_val_loader = dict(
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="mtvision.collate_samples"),
)
val_dataloader = dict(
    imagenet=dict(
        _val_loader,
        batch_size=64,
        dataset=dict(
            type="ImageNetFolder",
            data_root=imagenet_root,
            split="val",
            pipeline=classification_test_pipeline,
            test_mode=True,
        ),
    ),
    coco=dict(
        _val_loader,
        batch_size=8,
        dataset=dict(
            type="CocoDetection",
            data_root=coco_root,
            ann_file="annotations/instances_val2017.json",
            data_prefix=dict(img="val2017/"),
            pipeline=detection_test_pipeline,
            test_mode=True,
        ),
    ),
    voc=dict(
        _val_loader,
        batch_size=1,
        dataset=dict(
            type="VOCSegmentation",
            data_root=voc_root,
            split="val",
            pipeline=segmentation_test_pipeline,
            test_mode=True,
        ),
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    imagenet=dict(classification=dict(type="TopKAccuracy", topk=(1, 5), prefix="classification")),
    coco=dict(
        detection=dict(type="CocoMetric", ann_file=coco_root + "annotations/instances_val2017.json")
    ),
    voc=dict(segmentation=dict(type="MeanIoU", prefix="voc")),
)
test_evaluator = val_evaluator
val_cfg = dict(type="MultiTaskValLoop")
test_cfg = dict(type="MultiTaskTestLoop")
