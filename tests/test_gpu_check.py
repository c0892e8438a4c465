"""tools/gpu_check.py: it refuses without a GPU, and the short configs it trains on one are valid.

The GPU run itself cannot happen here; what can go wrong before it is
checked on CPU: every demo config, cut to a few iterations the way the
script cuts it, trains (without --amp) on a tiny copy of the demo data.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_toy import load_tool

from mtvision.benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_refuses_without_a_gpu_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gpu_check.py"), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: tools/gpu_check.py measures the CUDA path and no CUDA GPU")
    assert not list(tmp_path.iterdir())  # nothing started


def test_the_demo_configs_cut_to_a_few_iterations_train_and_evaluate(tmp_path, monkeypatch, capsys):
    make_demo_data = load_tool("make_demo_data").main
    make_demo_data(
        ["--out", str(tmp_path / gpu_check.DEMO_DATA), "--num-train", "16"] + ["--num-val", "4"]
    )
    monkeypatch.chdir(tmp_path)  # the demo configs read data/demo relative to the working dir
    train, evaluate = load_tool("train").main, load_tool("eval").main
    assert len(gpu_check.demo_configs()) == 4  # classifier, segmenter, multi-task, detector
    for config in gpu_check.demo_configs():
        stem = Path(config).stem
        derived = tmp_path / f"{stem}.py"
        derived.write_text(gpu_check.short_config(config, 2), encoding="utf-8")
        runner = train(
            [str(derived), "--work-dir", str(tmp_path / stem)]
            + ["--cfg-options", "train_dataloader.batch_size=2"]
            + [f"experiment_name={tmp_path.name}_{stem}"]
        )
        assert runner.iter == 2, config
        assert (tmp_path / stem / "iter_2.pth").is_file()
        assert runner.val_loop is None  # evaluation is the script's own step
        speed = gpu_check.images_per_second(str(tmp_path / stem), images_per_iter=2)
        assert speed is None  # 2 iterations: nothing after the warm-up to time
        # Step 2's evaluation: the demo config as it is, on the checkpoint.
        capsys.readouterr()
        metrics = evaluate(
            [str(REPO / config), str(tmp_path / stem / "last.pth")]
            + ["--work-dir", str(tmp_path / "eval")]
            + ["--cfg-options", f"experiment_name={tmp_path.name}_{stem}_eval"]
        )
        summary = gpu_check.printed_metrics(capsys.readouterr().out)
        floats = {k: v for k, v in sorted(metrics.items()) if isinstance(v, float)}
        assert summary == ", ".join(f"{k} {v:.4f}" for k, v in list(floats.items())[:4]), config
