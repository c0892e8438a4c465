"""The segmentation recipes end to end: VOC-layout data -> tools/train.py -> tools/eval.py."""

import shutil
import time

import numpy as np
import pytest
from engine_toy import deployed_eval, load_tool, loader_options, minutes_since
from PIL import Image

from mtvision.engine import load_config
from mtvision.synthetic.shapes import SHAPE_CLASSES, generate_shapes_dataset

VOC_CONFIG = "configs/deeplabv3_voc.py"
DEMO_CONFIG = "configs/demo/deeplabv3_shapes.py"
train_tool = load_tool("train")
eval_tool = load_tool("eval")


def _add_train_aug(voc_root):
    """Lay the train masks out as the SBD-augmented set: grayscale 'L' PNGs in
    SegmentationClassAug and the id list ImageSets/Segmentation/train_aug.txt."""
    lists = voc_root / "ImageSets" / "Segmentation"
    shutil.copy(lists / "train.txt", lists / "train_aug.txt")
    aug = voc_root / "SegmentationClassAug"
    aug.mkdir()
    for img_id in (lists / "train.txt").read_text().split():
        indices = np.asarray(Image.open(voc_root / "SegmentationClass" / f"{img_id}.png"))
        Image.fromarray(indices).save(aug / f"{img_id}.png")  # uint8 2-D: mode 'L'


def test_voc_recipe_trains_two_iterations_on_a_tiny_voc_tree(tmp_path):
    generate_shapes_dataset(tmp_path / "shapes", seed=1, num_train=3, num_val=2)
    voc_root = tmp_path / "shapes" / "VOCdevkit" / "VOC2012"
    _add_train_aug(voc_root)
    options = loader_options(
        f"dataset.data_root={voc_root}", "batch_size=2", "num_workers=0", "persistent_workers=False"
    )
    runner = train_tool.main(
        [
            VOC_CONFIG,
            "--work-dir",
            str(tmp_path / "work"),
            "--cfg-options",
            "train_cfg.max_iters=2",
            *options,
        ]
    )
    assert runner.iter == 2
    dataset = runner.train_dataloader.dataset
    assert dataset.split == "train_aug" and dataset.mask_dir.endswith("SegmentationClassAug")
    assert len(dataset) == 3 and len(dataset.metainfo["classes"]) == 21
    model = runner.model
    head = model.heads["segmentation"]
    assert head.num_classes == 21 and model.backbone.output_stride == 16
    assert head.in_spec.name == "stage7" and head.in_spec.channels == 320
    # TF-DeepLab's optimiser: SGD momentum 0.9, lr 0.007 with poly decay (power 0.9) over
    # 30k iterations, weight decay 4e-5 on conv weights and none on BatchNorm.
    groups = runner.optim_wrapper.optimizer.param_groups
    assert {g["momentum"] for g in groups} == {0.9}
    assert {g["weight_decay"] for g in groups} == {4e-5, 0.0}
    assert groups[0]["lr"] == pytest.approx(0.007 * (1 - 2 / 30000) ** 0.9, rel=1e-7)
    scalars = runner.message_hub.log_scalars
    assert np.isfinite(scalars["train/segmentation.loss_seg"].current())
    assert 0.0 <= scalars["val/seg/mIoU"].current() <= 1.0  # validation ran after iteration 2
    assert (tmp_path / "work" / "last.pth").is_file()


def test_demo_config_names_the_synthetic_classes():
    cfg = load_config(DEMO_CONFIG)
    classes = ("background", *SHAPE_CLASSES)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert cfg[loader].dataset.classes == classes
    assert cfg.model.heads.segmentation.num_classes == len(classes)


@pytest.mark.slow
def test_demo_recipe_learns_the_shapes(tmp_path):
    """The full demo recipe (data as `make demo` writes it) must clearly beat chance."""
    root = tmp_path / "shapes"
    generate_shapes_dataset(root, seed=0, num_train=3000, num_val=300)
    options = loader_options(f"dataset.data_root={root / 'VOCdevkit' / 'VOC2012'}")
    work_dir = tmp_path / "work"
    start = time.perf_counter()
    runner = train_tool.main([DEMO_CONFIG, "--work-dir", str(work_dir), "--cfg-options", *options])
    val_miou = runner.message_hub.get_scalar("val/seg/mIoU").current()
    print(f"segmentation demo: mIoU {val_miou:.4f}, {minutes_since(start)} of training")
    metrics = eval_tool.main(
        [
            DEMO_CONFIG,
            str(work_dir / "last.pth"),
            "--work-dir",
            str(tmp_path / "eval"),
            "--cfg-options",
            *options,
        ]
    )
    # The evaluation of the saved checkpoint reproduces the end-of-training validation.
    assert metrics["seg/mIoU"] == pytest.approx(val_miou, abs=1e-9)
    # Chance on this val set: every pixel background scores mIoU 0.116 (background IoU
    # 0.814, 0 for the 6 shapes); uniform random labels score 0.042.
    assert val_miou >= 0.45

    # Deployed (any image size, argmax inside): the same class maps on 8 val images and
    # the same mIoU (whole images: no resize, so the class map is the prediction).
    _, agreements, onnx_metrics = deployed_eval(
        DEMO_CONFIG, work_dir / "last.pth", options, tmp_path, "--dynamic-size"
    )
    print(f"segmentation demo deployed (onnxruntime float): mIoU {onnx_metrics['seg/mIoU']:.4f}")
    assert agreements["segmentation"] >= 0.9999
    assert onnx_metrics["seg/mIoU"] == pytest.approx(metrics["seg/mIoU"], abs=1e-3)
