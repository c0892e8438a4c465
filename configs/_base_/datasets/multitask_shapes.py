# Multi-task data on the synthetic "shapes" set. tools/make_demo_data.py writes the same
# images (same pixels, same file stems) in COCO, ImageNet and VOC layouts; JoinedDataset
# joins them by file stem, so every sample carries boxes + labels (COCO json), a class
# label (ImageNet class folder) and a mask (VOC SegmentationClass PNG), and one
# augmentation moves image, boxes and mask together. Each head keeps its own label space
# (metainfo["tasks"][head]): COCO category order, sorted folder names, VOC mask values.
# Validation: one entry, the joined val split, scored by the three metrics; each metric
# gets its own task's metainfo (docs/multitask.md).
# Data parts only: a recipe inheriting this file adds the multi-task model.
#   python tools/make_demo_data.py --out data/demo --seed 0 --num-train 3000 --num-val 300
data_root = "data/demo/"
input_size = 160
# Background + mtvision.synthetic.shapes.SHAPE_CLASSES; mask value = index.
seg_classes = ("background", "circle", "square", "triangle", "star", "cross", "hexagon")

# Part order matters for one thing: a meta key several parts give keeps the first part's
# value, and CocoMetric reads the COCO image id (meta["img_id"]), so COCO comes first.
train_parts = dict(
    detection=dict(
        type="CocoDetection",
        data_root=data_root + "coco/",
        ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
    ),
    classification=dict(type="ImageNetFolder", data_root=data_root + "imagenet", split="train"),
    segmentation=dict(
        type="VOCSegmentation",
        data_root=data_root + "VOCdevkit/VOC2012",
        split="train",
        classes=seg_classes,
    ),
)
# The same layouts, val split.
val_parts = dict(
    detection=dict(
        train_parts["detection"],
        ann_file="annotations/instances_val2017.json",
        data_prefix=dict(img="val2017/"),
    ),
    classification=dict(train_parts["classification"], split="val"),
    segmentation=dict(train_parts["segmentation"], split="val"),
)

# The mask is read before the augmentations, which move it with the image and boxes
# (masks resampled nearest-neighbour).
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadMask"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="HorizontalFlip", p=0.5),
            dict(type="Resize", height=input_size, width=input_size),
        ],
    ),
    dict(type="PackInputs"),
]
# The image is resized for the network; the mask is read after the resize, so it stays
# at the original size, where the model's pred_mask and the boxes (mapped back through
# meta ori_shape / img_shape) are scored.
test_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations", transforms=[dict(type="Resize", height=input_size, width=input_size)]
    ),
    dict(type="LoadMask"),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(type="JoinedDataset", datasets=train_parts, pipeline=train_pipeline),
)
# Evaluation entries (MultiTaskValLoop): entry name -> dataloader, and in the evaluator
# entry name -> {head: metric}; the heads named run on the entry's images.
val_dataloader = dict(
    shapes=dict(
        batch_size=32,
        num_workers=1,
        persistent_workers=True,
        sampler=dict(type="DefaultSampler", shuffle=False),
        collate_fn=dict(type="mtvision.collate_samples"),
        dataset=dict(
            type="JoinedDataset", datasets=val_parts, pipeline=test_pipeline, test_mode=True
        ),
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    shapes=dict(
        classification=dict(type="TopKAccuracy", topk=(1, 5), prefix="classification"),
        detection=dict(
            type="CocoMetric", ann_file=data_root + "coco/annotations/instances_val2017.json"
        ),
        segmentation=dict(type="MeanIoU", prefix="voc"),
    ),
)
test_evaluator = val_evaluator
val_cfg = dict(type="MultiTaskValLoop")
test_cfg = dict(type="MultiTaskTestLoop")
