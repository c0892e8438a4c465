# TF-DeepLab's schedule: SGD momentum 0.9, lr 0.007 for a batch of 16, "poly" decay
# lr = 0.007 * (1 - iter / 30000) ** 0.9 down to 0, weight decay 4e-5 on conv and
# linear weights only (TF-slim regularises no BatchNorm parameter and no bias).
# Configs using it set iteration-based checkpoints and logging (default_runtime.py
# counts epochs): see configs/deeplabv3_voc.py.
max_iters = 30000
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.007, momentum=0.9, weight_decay=4e-5),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = dict(
    type="PolyLR", power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=max_iters
)
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=3000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
# `tools/train.py --auto-scale-lr` rescales lr linearly when the total batch differs.
auto_scale_lr = dict(enable=False, base_batch_size=16)
