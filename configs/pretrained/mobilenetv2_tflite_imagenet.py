# Google's MobileNetV2 1.0 ImageNet classifier, converted from its TFLite file (the uint8
# mobilenet_v2_1.0_224_quant.tflite or the int8 tf2_mobilenet_v2_1.0_224_ptq.tflite):
#   python tools/convert_weights.py mobilenet_v2_1.0_224_quant.tflite --labels imagenet_labels.txt \
#       --config configs/pretrained/mobilenetv2_tflite_imagenet.py --out work_dirs/pretrained/mobilenet_v2_1.0_224_quant.pth
#   python tools/eval.py configs/pretrained/mobilenetv2_tflite_imagenet.py work_dirs/pretrained/mobilenet_v2_1.0_224_quant.pth
# The file has 1001 outputs with "background" at 0; this config keeps the 1000 ImageNet
# classes (the converter drops row 0), so label i is the i-th sorted synset folder of an
# ImageNet val folder. The recipe of configs/mobilenetv2_imagenet.py plus what the TF
# weights need: TF's "SAME" padding and inputs scaled to [-1, 1]. The BatchNorms hold
# folded weights (exact in eval mode only; docs/pretrained.md).
_base_ = ["../mobilenetv2_imagenet.py"]

model = dict(
    backbone=dict(padding="same"),
    # (x - 127.5) / 127.5, TF-slim's preprocessing.
    data_preprocessor=dict(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)),
)
