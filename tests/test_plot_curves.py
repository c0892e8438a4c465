"""tools/plot_curves.py on scalar logs written to tmp_path in mmengine's LocalVisBackend format."""

import json

import numpy as np
import pytest
from engine_toy import load_tool

from mtvision.data.image_io import load_image
from mtvision.engine.cli import run_cli
from mtvision.errors import ScalarLogError

plot_tool = load_tool("plot_curves")


def write_log(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def train_line(iteration, epoch, cls, det, seg):
    return {
        "lr": 0.01,
        "data_time": 0.01,
        "loss": cls + det + seg,
        "loss_classification": cls,
        "loss_detection": det,
        "loss_segmentation": seg,
        "time": 0.2,
        "epoch": epoch,
        "iter": iteration,
        "step": iteration,
    }


def val_line(epoch, top1, box_map, miou):
    return {
        "classification/top1": top1,
        "coco/bbox_mAP": box_map,
        "coco/bbox_mAP_l": -1.0,  # COCO's "undefined"
        "voc/mIoU": miou,
        "data_time": 0.01,
        "time": 0.1,
        "step": epoch,
    }


@pytest.fixture
def work_dir(tmp_path):
    work = tmp_path / "work"
    # an older run and an evaluation run without training lines: not the ones plotted
    write_log(work / "20260101_000000/vis_data/scalars.json", [train_line(5, 1, 9, 9, 9)])
    write_log(
        work / "20260101_000300/vis_data/scalars.json",
        [
            train_line(10, 1, 1.8, 2.5, 1.2),
            train_line(20, 1, 1.5, 2.0, 1.0),
            val_line(1, 0.40, 0.10, 0.30),
            train_line(30, 2, 1.1, 1.7, 0.8),
            train_line(40, 2, 0.9, 1.5, 0.7),
            val_line(2, 0.60, 0.25, 0.45),
        ],
    )
    write_log(work / "20260101_000900/vis_data/scalars.json", [val_line(0, 0.6, 0.25, 0.45)])
    return work


def test_losses_per_task_and_metrics_per_validation(work_dir, capsys):
    curves = plot_tool.main([str(work_dir)])
    assert curves.source == str(work_dir / "20260101_000300/vis_data/scalars.json")
    assert sorted(curves.losses) == [
        "loss",
        "loss_classification",
        "loss_detection",
        "loss_segmentation",
    ]
    assert curves.losses["loss_detection"] == ([10, 20, 30, 40], [2.5, 2.0, 1.7, 1.5])
    assert curves.losses["loss"][1] == pytest.approx([5.5, 4.5, 3.6, 3.1])
    # each validation sits at the last training iteration logged before it
    assert curves.metrics == {
        "classification/top1": ([20, 40], [0.40, 0.60]),
        "coco/bbox_mAP": ([20, 40], [0.10, 0.25]),
        "voc/mIoU": ([20, 40], [0.30, 0.45]),
    }
    picture = load_image(work_dir / "curves.png")
    # four panels of 5 x 4 inches at 100 dpi: losses, classification, coco, voc
    assert picture.shape == (400, 2000, 3)
    for panel in range(4):
        tile = picture[60:340, panel * 500 + 80 : panel * 500 + 480]
        assert len(np.unique(tile.reshape(-1, 3), axis=0)) > 20  # curves drawn, not blank
    assert "4 loss curves, 3 metrics" in capsys.readouterr().out


def test_metric_selection_and_a_file_path(work_dir, tmp_path):
    log = work_dir / "20260101_000300/vis_data/scalars.json"
    out = tmp_path / "plots/only_map.png"
    plot_tool.main([str(log), "--out", str(out), "--metrics", "coco/*"])
    assert load_image(out).shape == (400, 1000, 3)  # losses + coco


def test_bad_logs_are_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no mmengine scalar log in .*empty"):
        plot_tool.main([str(tmp_path / "empty")])
    log = tmp_path / "work/20260101_000000/vis_data/scalars.json"
    write_log(log, [train_line(10, 1, 1, 1, 1)])
    with log.open("a") as file:
        file.write('{"loss": 1.0, "iter": 2\n')
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: plot_tool.main([str(tmp_path / "work")]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {log}:2: not a JSON line")
    write_log(log, [val_line(1, 0.5, 0.5, 0.5)])
    with pytest.raises(ScalarLogError, match=r"nothing to plot .*no metric matching \['seg/\*'\]"):
        plot_tool.main([str(tmp_path / "work"), "--metrics", "seg/*"])
