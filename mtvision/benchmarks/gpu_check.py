"""The GPU path, checked and measured in one run (what ``tools/gpu_check.py`` runs): AMP training, evaluation, torchrun + nccl, speed.

    python tools/gpu_check.py [--out work_dirs/gpu_check] [--iters 50] [--configs CFG ...]

Needs a CUDA GPU and refuses without one (``error: ...``, exit 2). From the
repository root, it runs each as its own process and goes on after a failure:

1. the demo data (``tools/make_demo_data.py``, the ``make demo`` command) into
   ``data/demo`` when it is not there yet;
2. for each demo config (``configs/demo/*.py``): ``tools/train.py --amp`` for
   ``--iters`` iterations (the config with an ``IterBasedTrainLoop`` of that
   length, written to ``OUT/configs/``), then ``tools/eval.py`` on the
   checkpoint with the demo config as it is;
3. ``torchrun --standalone --nproc_per_node=1 tools/train.py ... --amp
   --launcher pytorch`` on the first config: the process group is nccl (the
   configs' ``env_cfg``), checked in the log;
4. ``tools/benchmark.py --device cuda`` at batch 1 (latency) and at batch 64
   with ``--train`` (throughput), mtvision against torchvision.

Training speed is images per second from mmengine's per-iteration times
(``vis_data/scalars.json``), the median after the first 10 iterations (warm-up:
cuDNN autotuning, allocator growth). Everything, logs included, goes to
``OUT``; ``OUT/summary.md`` is the table that docs/distributed.md quotes.
Takes a few minutes on one recent GPU.
"""

from __future__ import annotations

import glob
import json
import os
import os.path as osp
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mtvision.engine import load_config

#: The repository root of an editable install (where tools/ and configs/ are).
REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = "data/demo"
WARMUP_ITERS = 10


def demo_configs(repo: Path = REPO) -> list[str]:
    """The demo configs (``configs/demo/*.py``), relative to ``repo``, sorted."""
    return sorted(str(p.relative_to(repo)) for p in (repo / "configs" / "demo").glob("*.py"))


class NoGPU(RuntimeError):
    """Raised when CUDA is unavailable."""


def short_config(config: str, iters: int, repo: Path = REPO) -> str:
    """A config file deriving from ``config`` that trains ``iters`` iterations and checkpoints once.

    Schedules that the demo configs convert from epochs to iterations keep
    working in an ``IterBasedTrainLoop`` (mmengine converts them with the
    epoch length of the train loader); validation happens in step 2's
    ``tools/eval.py`` instead of inside training.
    """
    return (
        f"_base_ = [{str(repo / config)!r}]\n"
        f"train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters},"
        f" val_interval={iters + 1})\n"
        "val_dataloader = None\nval_cfg = None\nval_evaluator = None\n"
        "default_hooks = dict(\n"
        f"    checkpoint=dict(by_epoch=False, interval={iters}, max_keep_ckpts=1),\n"
        "    logger=dict(interval=10),\n"
        ")\n"
        "log_processor = dict(by_epoch=False)\n"
    )


def images_per_second(work_dir: str, images_per_iter: int) -> float | None:
    """Median training speed after the warm-up, from mmengine's per-iteration times."""
    scalars = sorted(glob.glob(osp.join(work_dir, "*", "vis_data", "scalars.json")))
    if not scalars:
        return None
    times = []
    with open(scalars[-1], encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            if "time" in record and record.get("iter", 0) > WARMUP_ITERS:
                times.append(record["time"])
    return images_per_iter / statistics.median(times) if times else None


class Report:
    """Runs the steps, keeps their outcome, writes ``summary.md``."""

    def __init__(self, out: Path, repo: Path = REPO):
        self.out = out
        self.repo = repo
        self.rows: list[tuple[str, str, str, str]] = []
        self.pending: tuple[str, str, str, str] | None = None
        self.failures = 0

    def run(self, name: str, command: list[str], timeout: float = 1800) -> tuple[bool, str]:
        """Run ``command`` from the repository root; log its output to ``OUT/<name>.log``."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.repo), env.get("PYTHONPATH")]))
        start = time.perf_counter()
        print(f"[gpu_check] {name}: {shlex.join(command)}", flush=True)
        try:
            result = subprocess.run(
                command,
                cwd=self.repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            output, ok = result.stdout + result.stderr, result.returncode == 0
        except subprocess.TimeoutExpired as error:
            output, ok = f"{error}\n{error.stdout or ''}{error.stderr or ''}", False
        seconds = time.perf_counter() - start
        (self.out / f"{name}.log").write_text(output, encoding="utf-8")
        if not ok:
            self.failures += 1
            print(output[-3000:], file=sys.stderr)
        self.pending = (name, shlex.join(command), f"{seconds:.0f} s", "ok" if ok else "FAILED")
        return ok, output

    def record(self, result: str) -> None:
        name, command, seconds, status = self.pending
        self.rows.append((name, command, seconds, result if status == "ok" else status))

    def write(self, header: str, extra: str) -> Path:
        lines = [header, "", "| step | command | time | result |", "|---|---|---:|---|"]
        lines += [f"| {n} | `{c}` | {s} | {r} |" for n, c, s, r in self.rows]
        summary = self.out / "summary.md"
        summary.write_text("\n".join(lines) + "\n\n" + extra, encoding="utf-8")
        return summary


def train_and_eval(report: Report, iters: int, config: str) -> str | None:
    """Step 2 for one config; returns the derived config's path."""
    stem = Path(config).stem
    derived = report.out / "configs" / f"{stem}_{iters}iters.py"
    derived.write_text(short_config(config, iters, report.repo), encoding="utf-8")
    work_dir = report.out / stem
    ok, _ = report.run(
        f"train_{stem}",
        [sys.executable, "tools/train.py", str(derived), "--amp", "--work-dir", str(work_dir)],
    )
    batch = _batch_size(derived)
    speed = images_per_second(str(work_dir), batch) if ok else None
    report.record(
        f"{iters} iterations of {batch} images, AMP: "
        + (f"{speed:.0f} images/s" if speed else "speed not logged")
    )
    ok, output = report.run(
        f"eval_{stem}",
        [sys.executable, "tools/eval.py", config, str(work_dir / "last.pth")]
        + ["--work-dir", str(work_dir / "eval")],
    )
    report.record(printed_metrics(output))
    return str(derived)


def _batch_size(config: Path) -> int:
    return int(load_config(config).train_dataloader.batch_size)


def printed_metrics(output: str) -> str:
    """The metrics tools/eval.py printed, in a few words: the first four fractional
    values of its table (a ``metric value`` header, then one ``name value`` line each,
    sorted by name), as printed."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.split() == ["metric", "value"]]
    if not starts:
        return "no metrics printed"
    shown = []
    for line in lines[starts[-1] + 1 :]:
        parts = line.split()
        if len(parts) != 2:
            break
        name, value = parts
        try:
            float(value)
        except ValueError:
            break
        if "." in value:  # integers (image counts) are not metrics worth a word
            shown.append(f"{name} {value}")
    return ", ".join(shown[:4]) or "evaluated"


def run_gpu_check(
    out: str | Path,
    iters: int = 50,
    configs: list[str] | None = None,
    benchmark_runs: int = 50,
    repo: Path = REPO,
) -> tuple[Path, int]:
    """Run the four steps (module docstring) from the repository ``repo``, writing everything
    under ``out``; returns ``OUT/summary.md`` and the number of failed steps.

    Raises:
        NoGPU: CUDA is not available (nothing is started or written).
    """
    if not torch.cuda.is_available():
        raise NoGPU(
            "tools/gpu_check.py measures the CUDA path and no CUDA GPU is visible here "
            "(torch.cuda.is_available() is False); run it on a machine with one"
        )
    configs = demo_configs(repo) if configs is None else configs
    given_out = out
    out = Path(out).resolve()
    (out / "configs").mkdir(parents=True, exist_ok=True)
    report = Report(out, repo)
    device = torch.cuda.get_device_name()
    header = (
        f"# GPU check: {device}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n\nCommand: `python tools/gpu_check.py "
        f"--out {given_out} --iters {iters}`"
    )

    if not (repo / DEMO_DATA / "dataset_info.json").is_file():
        report.run(
            "demo_data",
            [sys.executable, "tools/make_demo_data.py", "--out", DEMO_DATA]
            + ["--seed", "0", "--num-train", "3000", "--num-val", "300"],
        )
        report.record("written")

    derived = [train_and_eval(report, iters, config) for config in configs]

    if derived:
        stem = Path(configs[0]).stem
        work_dir = out / f"torchrun_{stem}"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node=1", "tools/train.py", derived[0], "--amp"]
        command += ["--work-dir", str(work_dir), "--launcher", "pytorch"]
        ok, output = report.run(f"torchrun_{stem}", command)
        logs = "".join(
            Path(p).read_text(encoding="utf-8") for p in glob.glob(str(work_dir / "*" / "*.log"))
        )
        # mtvision's Runner logs "effective batch N (1 process x N images, <backend>)".
        backend = "nccl" if " images, nccl)" in logs else "NOT nccl (see the log)"
        speed = images_per_second(str(work_dir), _batch_size(Path(derived[0]))) if ok else None
        report.record(f"1 process, {backend}" + (f", {speed:.0f} images/s" if speed else ""))

    benchmarks = []
    for label, extra in (("batch 1", ["--batch", "1"]), ("batch 64", ["--batch", "64", "--train"])):
        command = [sys.executable, "tools/benchmark.py", "--device", "cuda", *extra]
        command += ["--runs", str(benchmark_runs), "--warmup", "10", "--topk-images", "1000"]
        ok, output = report.run(f"benchmark_{label.replace(' ', '')}", command)
        report.record("see below" if ok else "FAILED")
        benchmarks.append(f"### tools/benchmark.py, {label}\n\n```\n{output.strip()}\n```\n")

    return report.write(header, "\n".join(benchmarks)), report.failures
