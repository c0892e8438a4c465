"""Train a model from a config file (mmdet's tools/train.py conventions).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp]
        [--auto-scale-lr] [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]
    torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch

``--resume`` alone resumes from the work dir's newest checkpoint that loads
(``last.pth``; a truncated one is skipped, named in the log, for the one
before); with a path it resumes from that checkpoint. A checkpoint written in
the middle of an epoch resumes at that point of the epoch. The work dir
defaults to ``work_dirs/<config file stem>``. Checkpoints go to the work dir,
the latest also as ``last.pth``.

Several processes or machines, and runs that survive a killed worker::

    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d \
        --rdzv_endpoint=HOST:29400 --rdzv_id=JOB tools/train.py CONFIG --launcher pytorch
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --max-restarts=3 --nproc_per_node=8 \
        tools/train.py CONFIG --launcher pytorch --resume

Workers that torchrun restarts resume from the work dir by themselves; see
docs/distributed.md (why the variable, checkpoints every N iterations,
resuming with another number of processes, ``sync_bn``).
"""

import argparse

import torch

from mtvision.engine import build_runner, load_config
from mtvision.engine.cli import add_cfg_options_argument, run_cli
from mtvision.engine.config import default_work_dir
from mtvision.engine.runner import close_process_group
from mtvision.errors import ConfigError
from mtvision.utils.atomic_files import check_output_dir


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model from a config file.")
    parser.add_argument("config", help="config file path")
    parser.add_argument("--work-dir", help="where logs and checkpoints go")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CHECKPOINT",
        help="resume from CHECKPOINT, or without a value from the work dir's latest one",
    )
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    parser.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale the lr linearly with the total batch size (config's auto_scale_lr)",
    )
    add_cfg_options_argument(parser, "train_cfg.max_epochs=10")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    return parser.parse_args(argv)


def main(argv=None):
    """Train as the command line says; returns the finished runner."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or default_work_dir(args.config)
    check_output_dir(cfg.work_dir, "--work-dir" if args.work_dir else "work_dir")
    if args.amp:
        if not torch.cuda.is_available():
            raise ConfigError(
                "--amp: mixed-precision training uses mmengine's AmpOptimWrapper, "
                "which needs a CUDA GPU; none is available here"
            )
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.auto_scale_lr:
        if "base_batch_size" not in (cfg.get("auto_scale_lr") or {}):
            raise ConfigError(
                f"{args.config}: --auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...)"
            )
        cfg.auto_scale_lr.enable = True
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = build_runner(cfg)
    runner.train()
    close_process_group()
    return runner


if __name__ == "__main__":
    run_cli(main)
