"""The demo classification recipe end to end: synthetic data -> train -> eval -> picture."""

import json
import time

import cv2
import pytest
from engine_toy import deployed_eval, load_tool, loader_options, minutes_since

from mtvision.synthetic.shapes import generate_shapes_dataset

DEMO_CONFIG = "configs/demo/mobilenetv2_shapes.py"
train_tool = load_tool("train")
eval_tool = load_tool("eval")
visualize_tool = load_tool("visualize")


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(out, seed=3, num_train=48, num_val=30)
    return out / "imagenet"


def test_train_eval_visualize_demo_config(small_shapes, tmp_path):
    work_dir = tmp_path / "work"
    options = [
        *loader_options(
            f"dataset.data_root={small_shapes}", "num_workers=0", "persistent_workers=False"
        ),
        "train_cfg.max_epochs=1",
        "train_cfg.val_interval=1",
        "default_hooks.checkpoint.interval=1",
    ]
    runner = train_tool.main([DEMO_CONFIG, "--work-dir", str(work_dir), "--cfg-options", *options])
    val_top1 = runner.message_hub.get_scalar("val/accuracy/top1").current()
    val_top5 = runner.message_hub.get_scalar("val/accuracy/top5").current()
    checkpoint = work_dir / "last.pth"
    assert checkpoint.is_file()

    out = tmp_path / "metrics.json"
    metrics = eval_tool.main(
        [
            DEMO_CONFIG,
            str(checkpoint),
            "--work-dir",
            str(tmp_path / "eval"),
            "--out",
            str(out),
            "--cfg-options",
            *options,
        ]
    )
    # The evaluation of the saved checkpoint reproduces the end-of-training validation.
    assert metrics["accuracy/top1"] == pytest.approx(val_top1, abs=1e-9)
    assert json.loads(out.read_text())["accuracy/top1"] == pytest.approx(val_top1, abs=1e-9)
    assert metrics["accuracy/top5"] == pytest.approx(val_top5, abs=1e-9)

    picture = tmp_path / "grid.png"
    grid = visualize_tool.main(
        [
            DEMO_CONFIG,
            str(checkpoint),
            "--out",
            str(picture),
            "--num",
            "6",
            "--columns",
            "3",
            "--cfg-options",
            *options,
        ]
    )
    written = cv2.imread(str(picture))
    assert written is not None and written.shape == grid.shape
    # 6 tiles in 3 columns: two rows of 160 px pictures with captions below them.
    assert grid.shape[0] > 2 * 160 and grid.shape[1] > 3 * 160


@pytest.mark.slow
def test_demo_recipe_learns_the_shapes(tmp_path):
    """The full demo recipe (data size as `make demo`) must clearly beat chance (1/6)."""
    root = tmp_path / "shapes"
    generate_shapes_dataset(root, seed=0, num_train=3000, num_val=300)
    options = loader_options(f"dataset.data_root={root / 'imagenet'}")
    start = time.perf_counter()
    runner = train_tool.main(
        [DEMO_CONFIG, "--work-dir", str(tmp_path / "work"), "--cfg-options", *options]
    )
    top1 = runner.message_hub.get_scalar("val/accuracy/top1").current()
    print(f"classification demo: top-1 {top1:.4f}, {minutes_since(start)} of training")
    metrics = eval_tool.main(
        [
            DEMO_CONFIG,
            str(tmp_path / "work" / "last.pth"),
            "--work-dir",
            str(tmp_path / "eval"),
            "--cfg-options",
            *options,
        ]
    )
    assert metrics["accuracy/top1"] == pytest.approx(top1, abs=1e-9)
    # Chance is 1/6; 300 val images put chance-level top-1 at 0.17 +- 0.02.
    assert top1 >= 0.35

    # Deployed (top-5 inside): the same top-1 on 8 val images and the same accuracy.
    _, agreements, onnx_metrics = deployed_eval(
        DEMO_CONFIG, tmp_path / "work" / "last.pth", options, tmp_path
    )
    print(
        f"classification demo deployed (onnxruntime float): top-1 {onnx_metrics['accuracy/top1']:.4f}"
    )
    assert agreements == {"classification": 1.0}
    assert onnx_metrics["accuracy/top1"] == pytest.approx(metrics["accuracy/top1"], abs=1e-3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "grid.txt"], "--out grid.txt: use an image file"),
        (["--out", "grid.PNG", "--num", "0"], "--num must be at least 1, got 0"),
        (["--out", "grid.png", "--columns", "-2"], "--columns must be at least 1, got -2"),
    ],
)
def test_visualize_refuses_bad_arguments_in_one_line(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        visualize_tool.parse_args([DEMO_CONFIG, "ckpt.pth", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
