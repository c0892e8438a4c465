# The peers' MobileNetV2 recipe (torchvision 71.878 top-1, mmpretrain 71.86):
# SGD momentum 0.9, lr 0.045 for a total batch of 256, weight decay 4e-5,
# lr x0.98 after every epoch, 300 epochs.
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.045, momentum=0.9, weight_decay=4e-5),
)
param_scheduler = dict(type="ExponentialLR", gamma=0.98, by_epoch=True)
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=300, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
# `tools/train.py --auto-scale-lr` rescales lr linearly when the total batch differs.
auto_scale_lr = dict(enable=False, base_batch_size=256)
