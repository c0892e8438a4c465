# DeepLabv3 + MobileNetV2 1.0 on PASCAL VOC 2012, the TF-DeepLab recipe
# (MobileNetV2 paper section 6.3, the on-device head of Table 7):
#   train on train_aug, 513x513 crops of images scaled 0.5-2.0, batch 16,
#   SGD momentum 0.9, lr 0.007, poly decay (power 0.9) over 30k iterations,
#   weight decay 4e-5, output stride 16, single-scale evaluation on val.
# batch_size is per process: one GPU takes 16, or e.g. 4 processes x 4:
#   python tools/train.py configs/deeplabv3_voc.py
#   torchrun --nproc_per_node=4 tools/train.py configs/deeplabv3_voc.py --launcher pytorch \
#       --cfg-options train_dataloader.batch_size=4
# Paper: 75.32 mIoU on val, starting from a COCO-pretrained backbone. Nothing is
# downloaded here: from scratch the recipe lands far lower; start from your own
# weights with --cfg-options load_from=PATH (a checkpoint of this model).
_base_ = [
    "_base_/models/deeplabv3_mobilenet_v2.py",
    "_base_/datasets/voc_segmentation.py",
    "_base_/schedules/sgd_poly_30k.py",
    "_base_/default_runtime.py",
]

# The schedule counts iterations; default_runtime.py's hooks count epochs.
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=3000, max_keep_ckpts=3),
)
log_processor = dict(by_epoch=False)

# BatchNorm statistics over all processes (torch.nn.SyncBatchNorm, CUDA only; refused
# on CPU): sync_bn = "torch", or --cfg-options sync_bn=torch. TF-DeepLab trains with
# 16 images per BatchNorm; with e.g. 4 processes x 4 images, turn it on to keep that.
sync_bn = None
