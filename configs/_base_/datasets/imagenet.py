# ImageNet-1k in the standard class-folder layout:
#   data/imagenet/train/n01440764/*.JPEG ... data/imagenet/val/n01440764/*.JPEG
# (val sorted into class folders, as torchvision's ImageFolder expects).
dataset_type = "ImageNetFolder"
data_root = "data/imagenet"

train_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="RandomResizedCrop", size=(224, 224)),
            dict(type="HorizontalFlip", p=0.5),
        ],
    ),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations",
        transforms=[
            dict(type="SmallestMaxSize", max_size=256),
            dict(type="CenterCrop", height=224, width=224),
        ],
    ),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(type=dataset_type, data_root=data_root, split="train", pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="mtvision.collate_samples"),
    dataset=dict(
        type=dataset_type, data_root=data_root, split="val", pipeline=test_pipeline, test_mode=True
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="TopKAccuracy", topk=(1, 5))
test_evaluator = val_evaluator
