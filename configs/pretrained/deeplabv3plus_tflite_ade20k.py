# Google's DeepLabv3+ MobileNetV2 for MLPerf Mobile (ADE20K-Top31: background + the 31
# most frequent ADE20K classes, 512x512 input), as converted from its int8 TFLite file
# (docs/pretrained.md says what the graph is):
#   python tools/convert_weights.py deeplabv3_mnv2_ade20k_int8.tflite \
#       --config configs/pretrained/deeplabv3plus_tflite_ade20k.py --out work_dirs/pretrained/deeplabv3plus_ade20k.pth
#   python tools/predict.py configs/pretrained/deeplabv3plus_tflite_ade20k.py \
#       work_dirs/pretrained/deeplabv3plus_ade20k.pth PHOTO.jpg --out-dir out/
# What the TF weights need: TF's "SAME" padding, TF1's legacy bilinear resize
# (align_corners=False, half_pixel_centers=False) in the decoder and for the logits,
# inputs scaled to [-1, 1], and the 512x512 input the file was exported at (the test
# pipeline resizes every image to it, as MLPerf's app feeds it). The BatchNorms hold
# folded weights (exact in eval mode only): fine-tune with norm_eval=True.
_base_ = ["../deeplabv3plus_ade20k.py"]

# Compute as Google's int8 runtime does (mtvision/convert/int8_emulation.py, from the
# checkpoint's meta["int8_emulation"]): tools/predict.py then gives the runtime's class
# maps (the float model agrees on 0.956 of the pixels of real photos). The checkpoint
# holds float weights; exports and training run the float model.
int8_emulation = True

input_size = 512
model = dict(
    backbone=dict(padding="same"),
    heads=dict(segmentation=dict(num_classes=32, padding="same", tf_legacy_resize=True)),
    data_preprocessor=dict(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)),
)
test_pipeline = [
    dict(type="LoadImage"),
    dict(
        type="Albumentations", transforms=[dict(type="Resize", height=input_size, width=input_size)]
    ),
    dict(type="LoadMask"),
    dict(type="PackInputs"),
]
val_dataloader = dict(dataset=dict(top_classes=31, pipeline=test_pipeline))
test_dataloader = val_dataloader
