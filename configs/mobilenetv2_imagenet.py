# MobileNetV2 1.0 on ImageNet-1k, the torchvision / mmpretrain recipe:
#   8 processes x 32 images = batch 256, SGD lr 0.045, wd 4e-5, lr x0.98 per epoch, 300 epochs.
#   torchrun --nproc_per_node=8 tools/train.py configs/mobilenetv2_imagenet.py --launcher pytorch
# Reference results: torchvision 71.878 top-1 / 90.286 top-5; mmpretrain 71.86 / 90.42.
_base_ = [
    "_base_/models/mobilenet_v2.py",
    "_base_/datasets/imagenet.py",
    "_base_/schedules/imagenet_sgd_300e.py",
    "_base_/default_runtime.py",
]
