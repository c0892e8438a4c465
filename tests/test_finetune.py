"""configs/finetune/: SSDLite fine-tuned from Google's ImageNet MobileNetV2 (converted from
its TFLite file) on real photos, the balloon set of ../shared/realdata (61 train / 13
val, one class). The weights are converted here, into tmp_path, as a user would."""

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
