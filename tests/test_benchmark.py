"""Smoke test of tools/benchmark.py: it runs with tiny settings and prints ratios (no timing claims)."""

import math
import re

import pytest
import torch
from engine_toy import load_tool

benchmark_tool = load_tool("benchmark")


def test_benchmark_prints_a_ratio_per_comparison(capsys):
    rows = benchmark_tool.main(
        ["--runs", "2", "--warmup", "1", "--size", "64", "--topk-images", "50"]
    )
    out = capsys.readouterr().out

    assert [row["name"].split(",")[0].split(" (")[0] for row in rows] == [
        "mtvision vs torchvision eager",
        "mtvision vs torchvision eager",
        "onnxruntime vs torch eager",
        "TopKAccuracy vs torch.topk",
    ]
    for row in rows:
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0
    # Our backbone holds torchvision's weights, so the logits agree exactly.
    assert rows[0]["check"].startswith("max abs diff 0 ")

    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(rows)  # header, rule, one line per comparison
    assert "ratio" in table[0]
    for row, line in zip(rows, table[2:], strict=True):
        assert line.count("|") == 7  # six cells: no stray "|" inside a cell
        assert re.search(rf"\|\s+{row['ratio']:.2f} \|", line)


def test_benchmark_rejects_zero_runs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_tool.main(["--runs", "0"])
    assert exit_info.value.code == 2
    assert "--runs must be >= 1" in capsys.readouterr().err


def test_benchmark_training_step_and_images_per_second(capsys):
    rows = benchmark_tool.main(
        ["--runs", "2", "--warmup", "0", "--size", "64", "--topk-images", "20", "--batch", "2"]
        + ["--train"]
    )
    out = capsys.readouterr().out
    (train,) = [row for row in rows if "training step" in row["name"]]
    assert train["name"].endswith("(batch 2)")
    # Same weights, dropout off: the first steps compute the same loss.
    ours_loss, reference_loss = (float(v) for v in train["check"].split("loss ")[1].split(" vs "))
    assert ours_loss == pytest.approx(reference_loss, rel=1e-5)
    for row in rows:
        if "TopKAccuracy" in row["name"]:
            assert "images_per_s" not in row
            continue
        ours_ips, reference_ips = row["images_per_s"]
        assert ours_ips == pytest.approx(2e3 / row["ours_ms"])
        assert reference_ips == pytest.approx(2e3 / row["reference_ms"])
        assert f"  {row['name']}: {ours_ips:.1f} / {reference_ips:.1f}" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_benchmark_on_cuda_without_a_gpu_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_tool.main(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert "--device cuda: no CUDA GPU is available here" in capsys.readouterr().err
