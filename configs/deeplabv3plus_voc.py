# DeepLabv3+ (decoder on the stride-4 tap) + MobileNetV2 1.0 on PASCAL VOC 2012: the
# recipe of configs/deeplabv3_voc.py (TF-DeepLab's: train_aug, 513x513 crops of images
# scaled 0.5-2.0, batch 16, SGD 0.9, lr 0.007 poly 0.9 over 30k iterations, weight
# decay 4e-5, output stride 16) with the decoder head.
# Reference (TF-DeepLab model zoo, g3doc/model_zoo.md): mobilenetv2_coco_voc_trainaug,
# DeepLabv3 MobileNetV2 without decoder, 75.32% val mIoU (OS 16, single scale); the zoo
# lists no VOC MobileNetV2 checkpoint with the decoder. DeepLabV3Plus-Pytorch
# (VainF, deeplabv3plus_mobilenet, OS 16, trained on train_aug from ImageNet weights):
# 71.1% val mIoU.
_base_ = [
    "_base_/models/deeplabv3plus_mobilenet_v2.py",
    "_base_/datasets/voc_segmentation.py",
    "_base_/schedules/sgd_poly_30k.py",
    "_base_/default_runtime.py",
]

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=3000, max_keep_ckpts=3),
)
log_processor = dict(by_epoch=False)
sync_bn = None
