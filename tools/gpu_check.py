"""Check and measure the GPU path in one run: AMP training, evaluation, torchrun + nccl, speed.

    python tools/gpu_check.py [--out work_dirs/gpu_check] [--iters 50] [--configs CFG ...]

Needs a CUDA GPU and refuses without one (``error: ...``, exit 2). The steps and
what ``OUT/summary.md`` holds: :mod:`mtvision.benchmarks.gpu_check`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtvision.benchmarks.gpu_check import NoGPU, demo_configs, run_gpu_check

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Check and measure the CUDA path.")
    parser.add_argument("--out", default="work_dirs/gpu_check", help="where everything goes")
    parser.add_argument("--iters", type=int, default=50, help="training iterations per config")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=demo_configs(REPO),
        help="configs to train (default: the demos)",
    )
    parser.add_argument(
        "--benchmark-runs", type=int, default=50, help="timed runs per benchmark comparison"
    )
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    summary, failures = run_gpu_check(
        args.out, args.iters, args.configs, args.benchmark_runs, repo=REPO
    )
    print(summary.read_text(encoding="utf-8"))
    if failures:
        print(f"[gpu_check] {failures} step(s) failed; logs in {summary.parent}", file=sys.stderr)
        sys.exit(1)
    return summary


if __name__ == "__main__":
    try:
        main()
    except NoGPU as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
