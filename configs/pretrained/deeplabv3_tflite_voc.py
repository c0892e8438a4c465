# Google's on-device DeepLabv3-MobileNetV2 (PASCAL VOC 2012, 21 classes, width 1.0), as
# converted from its TFLite file (docs/pretrained.md says what the graph is):
#   python tools/convert_weights.py deeplabv3_mnv2_pascal_quant.tflite \
#       --config configs/pretrained/deeplabv3_tflite_voc.py --out work_dirs/pretrained/deeplabv3_mnv2_pascal.pth
#   python tools/eval.py configs/pretrained/deeplabv3_tflite_voc.py work_dirs/pretrained/deeplabv3_mnv2_pascal.pth \
#       --cfg-options test_dataloader.dataset.data_root=/path/to/VOCdevkit/VOC2012
# The recipe of configs/deeplabv3_voc.py plus what the TF weights need: TF's "SAME"
# padding, the logits upsampled with align_corners=True, and inputs scaled to [-1, 1].
# The BatchNorms hold folded weights (exact in eval mode only): fine-tuning from this
# checkpoint needs them frozen or re-estimated first (docs/pretrained.md).
_base_ = ["../deeplabv3_voc.py"]

model = dict(
    backbone=dict(padding="same"),
    heads=dict(segmentation=dict(padding="same", align_corners=True)),
    # (x - 127.5) / 127.5, TF-DeepLab's preprocessing (the file's uint8 input: (x - 128) / 128).
    data_preprocessor=dict(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)),
)
