# mmdet's SSDLite-MobileNetV2 schedule (ssdlite_mobilenetv2-scratch_8xb24-600e_coco,
# 21.3 box mAP): SGD momentum 0.9, lr 0.015 for batch 8 x 24 = 192, weight decay
# 4e-5, 500 iterations of linear warm-up, cosine decay over 600 epochs (mmdet runs
# 120 epochs of a 5x RepeatDataset; the same number of steps).
max_epochs = 600
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.015, momentum=0.9, weight_decay=4e-5),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, eta_min=0.0),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
# --auto-scale-lr scales lr by (total batch / 192).
auto_scale_lr = dict(enable=False, base_batch_size=192)
