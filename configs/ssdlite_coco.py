# SSDLite-MobileNetV2 320x320 on COCO 2017, trained from scratch: the recipe the
# peers used to reach ~21-22 box mAP (mmdet 21.3, paper 22.1 on test-dev with an
# ImageNet-pretrained backbone). 8 processes x 24 images:
#   torchrun --nproc_per_node=8 tools/train.py configs/ssdlite_coco.py --launcher pytorch
#   python tools/eval.py configs/ssdlite_coco.py work_dirs/ssdlite_coco/last.pth --out results.json
# Starting from ImageNet weights shortens it: load a torchvision mobilenet_v2 state
# dict into model.backbone with load_torchvision_state_dict (docs/configs.md).
_base_ = [
    "_base_/models/ssdlite_mobilenet_v2.py",
    "_base_/datasets/coco_detection.py",
    "_base_/schedules/ssdlite_sgd_cosine_600e.py",
    "_base_/default_runtime.py",
]

default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))

# BatchNorm statistics over all processes (torch.nn.SyncBatchNorm, CUDA only; refused
# on CPU): sync_bn = "torch", or --cfg-options sync_bn=torch. Worth it when the
# batch per GPU is small; mmdet trains this recipe with 24 images per GPU and without.
sync_bn = None
