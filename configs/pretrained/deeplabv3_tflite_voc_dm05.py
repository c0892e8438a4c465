# Google's on-device DeepLabv3-MobileNetV2 at width 0.5 (deeplabv3_mnv2_dm05_pascal_quant.tflite):
#   python tools/convert_weights.py deeplabv3_mnv2_dm05_pascal_quant.tflite \
#       --config configs/pretrained/deeplabv3_tflite_voc_dm05.py --out work_dirs/pretrained/deeplabv3_mnv2_dm05_pascal.pth
# TF-DeepLab does not round thinned channel counts to multiples of 8 (width 0.5 has 12
# channels where torchvision's rounding gives 16): round_nearest=1. The head stays 256 wide.
_base_ = ["deeplabv3_tflite_voc.py"]

model = dict(backbone=dict(width_mult=0.5, round_nearest=1))
