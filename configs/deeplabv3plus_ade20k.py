# DeepLabv3+ (decoder on the stride-4 tap) + MobileNetV2 1.0 on ADE20K (150 classes).
# Not runnable at scale here; the recipe as the references train it:
#   TF-DeepLab (g3doc/model_zoo.md, "mobilenetv2_ade20k_train", the checkpoint
#   deeplabv3_mnv2_ade20k_train_2018_12_03 Google's MLPerf file comes from): MobileNetV2
#   DeepLabv3+ trained on ADE20K train, 32.04% val mIoU at output stride 16, single scale.
#   mmseg (configs/mobilenet_v2/README.md, mobilenet-v2-d8_deeplabv3plus_4xb4-160k_ade20k-
#   512x512): 34.02% val mIoU, output stride 8, 512x512 crops, batch 16, SGD lr 0.01
#   poly 0.9 over 160k iterations, weight decay 5e-4.
# (Numbers as the two READMEs list them; not re-measured here.) The schedule below is
# mmseg's; TF-DeepLab's own VOC values (lr 0.007, weight decay 4e-5) are in
# _base_/schedules/sgd_poly_30k.py.
_base_ = [
    "_base_/models/deeplabv3plus_mobilenet_v2.py",
    "_base_/datasets/ade20k.py",
    "_base_/schedules/sgd_poly_30k.py",
    "_base_/default_runtime.py",
]

model = dict(heads=dict(segmentation=dict(num_classes=150)))

max_iters = 160000
optim_wrapper = dict(optimizer=dict(lr=0.01, weight_decay=5e-4))
param_scheduler = dict(end=max_iters)
train_cfg = dict(max_iters=max_iters, val_interval=16000)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=16000, max_keep_ckpts=3),
)
log_processor = dict(by_epoch=False)
sync_bn = None
