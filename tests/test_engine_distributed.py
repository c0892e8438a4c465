"""Two CPU processes under torchrun (gloo): training stays in sync, eval gathers right."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_toy import load_tool, write_config

from mtvision.engine import load_checkpoint_file

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def torchrun(tool: str, *args: str, timeout: float = 180) -> None:
    """``torchrun --standalone --nproc_per_node=2 tools/<tool>.py ... --launcher pytorch``."""
    # No visible GPU: the CPU/gloo path is what this exercises, on any machine.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free port
        "--nproc_per_node=2",
        str(REPO / "tools" / f"{tool}.py"),
        *args,
        "--launcher",
        "pytorch",
    ]
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 iterations on 2 processes; returns (config, work_dir)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    config = write_config(
        tmp_path / "ddp.py",
        train_cfg=dict(by_epoch=False, max_iters=4),
        custom_hooks=[dict(type="DumpParamsHook")],
    )
    work_dir = tmp_path / "work"
    torchrun("train", config, "--work-dir", str(work_dir))
    return config, work_dir


def test_ranks_end_with_identical_parameters(trained):
    _, work_dir = trained

    def params(when, rank):
        return torch.load(work_dir / f"params_{when}_rank{rank}.pt", weights_only=True)

    assert torch.equal(params("before", 0), params("before", 1))
    assert torch.equal(params("after", 0), params("after", 1))
    assert not torch.allclose(params("after", 0), params("before", 0))  # it did train
    state = load_checkpoint_file(work_dir / "last.pth")["state_dict"]
    names = ("conv.weight", "bn.weight", "bn.bias", "fc.weight", "fc.bias")
    assert torch.equal(torch.cat([state[n].flatten() for n in names]), params("after", 0))


def test_two_process_eval_equals_single_process(trained, tmp_path):
    config, work_dir = trained
    checkpoint = str(work_dir / "last.pth")
    torchrun(
        "eval",
        config,
        checkpoint,
        "--work-dir",
        str(tmp_path / "ddp"),
        "--out",
        str(tmp_path / "ddp.json"),
    )
    distributed = json.loads((tmp_path / "ddp.json").read_text())
    single = load_tool("eval").main(
        [config, checkpoint, "--work-dir", str(tmp_path / "single")]
        + ["--cfg-options", f"experiment_name={tmp_path.name}_single"]
    )
    assert distributed["num_samples"] == single["num_samples"] == 7
    assert distributed["accuracy"] == pytest.approx(single["accuracy"], abs=1e-12)
    assert distributed["logit_sum"] == pytest.approx(single["logit_sum"], abs=1e-5)
