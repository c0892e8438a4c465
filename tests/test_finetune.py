"""configs/finetune/: SSDLite fine-tuned from Google's ImageNet MobileNetV2 (converted from
its TFLite file) on real photos, the balloon set of ../shared/realdata (61 train / 13
val, one class). The weights are converted here, into tmp_path, as a user would."""

import re
import time

import pytest
from engine_toy import load_tool

BALLOON_CONFIG = "configs/finetune/ssdlite_balloon.py"
# The goal on the 13 val photos (the recipe gets 0.572; the same schedule from
# scratch 0.008: docs/results.md).
MIN_BALLOON_MAP50 = 0.5
convert_tool = load_tool("convert_weights")
train_tool = load_tool("train")
eval_tool = load_tool("eval")


@pytest.mark.slow
def test_balloon_recipe_from_the_converted_backbone(realdata, tmp_path, monkeypatch):
    checkpoint = tmp_path / "mobilenet_v2_1.0_224_quant.pth"
    tflite = realdata / "coral_mobilenetv2_tflite/models/mobilenet_v2_1.0_224_quant.tflite"
    convert_tool.main([str(tflite), "--out", str(checkpoint)])
    # The config's one switch for another COCO-layout folder (mmengine's {{$DATA_ROOT:...}}).
    monkeypatch.setenv("DATA_ROOT", str(realdata / "balloon" / "coco"))
    work_dir = tmp_path / "work"
    start = time.perf_counter()
    runner = train_tool.main(
        [
            BALLOON_CONFIG,
            "--work-dir",
            str(work_dir),
            "--cfg-options",
            f"model.backbone.init_cfg.checkpoint={checkpoint}",
        ]
    )
    minutes = (time.perf_counter() - start) / 60
    map50 = runner.message_hub.get_scalar("val/coco/bbox_mAP_50").current()
    ap = runner.message_hub.get_scalar("val/coco/bbox_mAP").current()
    print(
        f"balloon, from the converted backbone: AP {ap:.3f}, AP@.5 {map50:.3f}, {minutes:.1f} min"
    )

    (log_file,) = work_dir.glob("*/*.log")
    log = log_file.read_text()
    assert (
        f"load MobileNetV2 from {checkpoint} (mtvision checkpoint, its 'backbone.*' keys): "
        "312 of 312 tensors loaded; left as initialised: none; in the file, not loaded: "
        "heads.classification.* (2)"
    ) in log
    assert "folded BatchNorm" not in log and "expect RGB" not in log  # the recipe is right
    assert runner.iter == 400
    assert map50 >= MIN_BALLOON_MAP50

    # tools/eval.py on the checkpoint gives the same numbers.
    metrics = eval_tool.main(
        [BALLOON_CONFIG, str(work_dir / "last.pth"), "--work-dir", str(tmp_path / "eval")]
    )
    assert metrics["coco/bbox_mAP_50"] == pytest.approx(map50, abs=1e-4)


DEEPLABV3PLUS_CONFIG = "configs/finetune/deeplabv3plus_voc_folder.py"
# Measured once (50 iterations, 2 CPU threads shared with other jobs, 5.4 min): mIoU 0.161
# on the 14 crops (21 classes, head from scratch), loss 2.91 -> 0.70; docs/segmentation.md.
MIN_VOC_FOLDER_MIOU = 0.12


@pytest.mark.slow
def test_deeplabv3plus_fine_tunes_from_the_converted_ade20k_backbone(
    realdata, tmp_path, monkeypatch
):
    """The 14 real VOC crops of ../shared/realdata as a user's VOC-layout folder (in
    tmp_path, linked): DeepLabv3+ starts from the backbone of Google's MLPerf ADE20K
    file (converted here) and learns the 21 VOC classes of those masks."""
    tflite = realdata / "mlperf_deeplabv3plus_ade20k/deeplabv3_mnv2_ade20k_int8.tflite"
    if not tflite.is_file():
        pytest.skip(f"{tflite} not present")
    checkpoint = tmp_path / "deeplabv3plus_ade20k.pth"
    convert_tool.main(
        [str(tflite), "--out", str(checkpoint), "--config",
         "configs/pretrained/deeplabv3plus_tflite_ade20k.py"]
    )  # fmt: skip
    voc = realdata / "voc2012_seg_samples_vainf/VOCdevkit/VOC2012"
    folder = tmp_path / "VOC2012"
    (folder / "ImageSets/Segmentation").mkdir(parents=True)
    for name in ("JPEGImages", "SegmentationClass"):
        (folder / name).symlink_to(voc / name)
    ids = (voc / "ImageSets/Segmentation/val.txt").read_text()
    for split in ("train", "val"):
        (folder / "ImageSets/Segmentation" / f"{split}.txt").write_text(ids)
    monkeypatch.setenv("DATA_ROOT", str(folder))
    work_dir = tmp_path / "work"
    start = time.perf_counter()
    runner = train_tool.main(
        [DEEPLABV3PLUS_CONFIG, "--work-dir", str(work_dir), "--cfg-options",
         f"model.backbone.init_cfg.checkpoint={checkpoint}"]
    )  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    miou = runner.message_hub.get_scalar("val/seg/mIoU").current()
    (log_file,) = work_dir.glob("*/*.log")
    log = log_file.read_text()
    losses = [float(v) for v in re.findall(r"segmentation\.loss_seg: ([0-9.]+)", log)]
    print(
        f"VOC crops from the ADE20K backbone: mIoU {miou:.3f}, losses {losses}, {minutes:.1f} min"
    )
    assert f"load MobileNetV2 from {checkpoint}" in log
    assert runner.iter == 50 and len(losses) >= 5
    assert losses[-1] < 0.5 * losses[0]
    assert miou >= MIN_VOC_FOLDER_MIOU
