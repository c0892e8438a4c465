"""The Runner's start-up log: one line a newcomer can read; mmengine's environment
dump (platform, compilers, the CUDA build string) and the config only at DEBUG."""

import mmengine
import pytest
import torch
from engine_toy import load_tool, read_logs, write_config

import mtvision

train_tool = load_tool("train")


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
def test_environment_dump_only_at_debug_level(tmp_path, log_level):
    config = write_config(
        tmp_path / "cfg.py",
        experiment_name=f"{tmp_path.name}_log",
        log_level=log_level,
        train_cfg=dict(by_epoch=False, max_iters=1),
        randomness=dict(seed=7),
    )
    train_tool.main([config, "--work-dir", str(tmp_path / "wd")])
    (log,) = read_logs(tmp_path / "wd")
    versions = (
        f"mtvision {mtvision.__version__}, torch {torch.__version__}, "
        f"mmengine {mmengine.__version__}; 1 process(es) on "
    )
    assert versions in log and "; seed 7 (log_level='DEBUG'" in log
    # collect_env's keys: the platform and torch's build configuration
    dumped = ("Environment:" in log, "PyTorch compiling details" in log, "Config:" in log)
    assert dumped == ((True,) * 3 if log_level == "DEBUG" else (False,) * 3)
    assert "System environment" not in log  # mmengine's own INFO dump is gone
