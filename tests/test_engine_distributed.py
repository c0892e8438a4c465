"""torchrun on CPU (gloo): processes and "nodes" stay in sync, eval gathers right, a killed
worker is restarted and resumes, resume works across numbers of processes; SyncBN on CPU is refused.

Each ``torchrun`` costs 10-20 s on 2 cores, so runs are shared through
module-scoped fixtures and the toy model and iteration counts are tiny.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_toy import epoch_overrides, load_tool, read_logs, write_config

from mtvision.engine import Runner, load_checkpoint_file, load_config
from mtvision.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
STANDALONE = ("--standalone", "--nproc_per_node=2")  # one machine, rendezvous on a free port
NO_BATCH_NORM = dict(type="ToyClassifier", num_classes=3, batch_norm=False)

train_tool = load_tool("train")


def torchrun_command(tool: str, *args: str, launcher=STANDALONE) -> list[str]:
    """``torchrun LAUNCHER tools/<tool>.py ARGS --launcher pytorch`` as an argument list."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launcher,
        str(REPO / "tools" / f"{tool}.py"),
        *args,
        "--launcher",
        "pytorch",
    ]


def torchrun_env() -> dict:
    # No visible GPU: the CPU/gloo path is what this exercises, on any machine.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return env


def torchrun(tool: str, *args: str, launcher=STANDALONE, timeout: float = 180, **env) -> str:
    """Run torchrun to completion; returns its output (stdout + stderr)."""
    result = subprocess.run(
        torchrun_command(tool, *args, launcher=launcher),
        cwd=REPO,
        env=dict(torchrun_env(), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def params(work_dir: Path, when: str, rank: int) -> torch.Tensor:
    """Flat parameters that DumpParamsHook saved."""
    return torch.load(work_dir / f"params_{when}_rank{rank}.pt", weights_only=True)


def samples(work_dir: Path, rank: int) -> dict[int, list[int]]:
    """Dataset indices per iteration that RecordSamplesHook saved for ``rank``."""
    return {
        it: batch for it, batch in json.loads((work_dir / f"samples_rank{rank}.json").read_text())
    }


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
    assert torch.equal(params(work_dir, "before", 0), params(work_dir, "before", 1))
    assert torch.equal(params(work_dir, "after", 0), params(work_dir, "after", 1))
    assert not torch.allclose(params(work_dir, "after", 0), params(work_dir, "before", 0))
    state = load_checkpoint_file(work_dir / "last.pth")["state_dict"]
    names = ("conv.weight", "bn.weight", "bn.bias", "fc.weight", "fc.bias")
    assert torch.equal(torch.cat([state[n].flatten() for n in names]), params(work_dir, "after", 0))


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


# --------------------------------------------------------------- two nodes


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """4 iterations on two "nodes" (one launcher each, 1 process each, c10d rendezvous on
    loopback) with 4 images per process, and in one process with 8; BatchNorm off."""
    tmp_path = tmp_path_factory.mktemp("nodes")
    config = write_config(
        tmp_path / "nodes.py",
        model=NO_BATCH_NORM,
        train_cfg=dict(by_epoch=False, max_iters=4),
        custom_hooks=[dict(type="DumpParamsHook")],
        log_level="INFO",
    )
    launcher = (
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{free_port()}",
        "--rdzv_id=mtvision-two-nodes",
        "--local_addr=127.0.0.1",
    )
    work_dir = tmp_path / "nodes"
    command = torchrun_command("train", config, "--work-dir", str(work_dir), launcher=launcher)
    nodes = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env=torchrun_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-5000:]
    single = tmp_path / "single"
    train_tool.main(
        [config, "--work-dir", str(single), "--cfg-options", "train_dataloader.batch_size=8"]
        + [f"experiment_name={tmp_path.name}_single"]
    )
    return work_dir, single


def test_two_nodes_train_like_one_process_with_their_global_batch(two_nodes):
    work_dir, single = two_nodes
    rank0, rank1 = params(work_dir, "after", 0), params(work_dir, "after", 1)
    assert torch.equal(rank0, rank1)
    assert not torch.allclose(rank0, params(work_dir, "before", 0))  # it did train
    difference = float((rank0 - params(single, "after", 0)).abs().max())
    print(
        f"two nodes vs one process, batch 2 x 4 vs 8: max abs parameter difference {difference:.3g}"
    )
    assert difference <= 1e-5
    (log,) = read_logs(work_dir)
    assert "effective batch 8 (2 processes x 4 images, gloo)" in log


# ---------------------------------------------------------- elastic restart

KILL_AFTER = 9  # rank 1 is SIGKILLed after iteration 9; the last checkpoint is iter_8


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """2 processes x 2 images, 2 epochs of 6 iterations, a checkpoint every 2 iterations."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    config = write_config(
        tmp_path / "run.py",
        custom_hooks=[dict(type="RecordSamplesHook"), dict(type="DumpParamsHook")],
        **epoch_overrides(batch_size=2),
    )
    torchrun("train", config, "--work-dir", str(tmp_path / "run"))
    return tmp_path / "run"


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """The same run, rank 1 SIGKILLed in epoch 2, under ``torchrun --max-restarts=1``."""
    tmp_path = tmp_path_factory.mktemp("killed")
    config = write_config(
        tmp_path / "run.py",
        custom_hooks=[
            dict(type="RecordSamplesHook"),
            dict(type="DumpParamsHook"),
            dict(type="KillWorkerHook", iters=KILL_AFTER, rank=1),
        ],
        **epoch_overrides(batch_size=2),
    )
    work_dir = tmp_path / "run"
    output = torchrun(
        "train",
        config,
        "--work-dir",
        str(work_dir),
        launcher=(*STANDALONE, "--max-restarts=1"),
        # A fresh rendezvous store for the restarted workers (docs/distributed.md).
        TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
    )
    return work_dir, output


def test_killed_worker_is_restarted_and_resumes_from_the_last_checkpoint(killed):
    work_dir, output = killed
    assert "(exitcode: -9) local_rank: 1" in output  # torchrun saw rank 1 die of SIGKILL
    first, restarted = read_logs(work_dir)
    assert "torchrun restarted" not in first
    assert f"restart 1): resuming from {work_dir / 'last.pth'}" in restarted
    assert "resumed epoch: 1, iter: 8" in restarted
    progress = load_checkpoint_file(work_dir / "iter_8.pth")["meta"]["train_progress"]
    assert (progress["world_size"], progress["epoch"], progress["epoch_samples_seen"]) == (2, 1, 8)


def test_restarted_run_ends_where_the_uninterrupted_one_does(killed, uninterrupted):
    work_dir, _ = killed
    for rank in (0, 1):
        # The restarted workers trained on the rest of epoch 2 only, as the uninterrupted did.
        expected = {it: b for it, b in samples(uninterrupted, rank).items() if it >= 8}
        assert samples(work_dir, rank) == expected
    difference = float(
        (params(work_dir, "after", 0) - params(uninterrupted, "after", 0)).abs().max()
    )
    print(
        f"killed after iteration {KILL_AFTER}, resumed from iter_8 "
        f"({KILL_AFTER - 8} iteration lost): max abs parameter difference {difference:.3g}"
    )
    assert difference <= 1e-6
    assert torch.equal(params(work_dir, "after", 0), params(work_dir, "after", 1))


# ------------------------------------------- another number of processes


def resume_in_one_process(tmp_path, checkpoint: Path, *args: str, **overrides):
    config = write_config(
        tmp_path / "one.py",
        experiment_name=f"{tmp_path.name}_one",
        custom_hooks=[dict(type="RecordItersHook"), dict(type="RecordSamplesHook")],
        **epoch_overrides(**overrides),
    )
    return train_tool.main(
        [config, "--work-dir", str(tmp_path / "one"), "--resume", str(checkpoint), *args]
    )


def recorded(runner, name):
    return next(h for h in runner.hooks if type(h).__name__ == name)


def test_two_to_one_process_at_an_epoch_boundary(tmp_path, uninterrupted):
    runner = resume_in_one_process(
        tmp_path, uninterrupted / "iter_6.pth", "--auto-scale-lr", batch_size=2
    )
    # Epoch 2 whole, in 12 iterations of 2 images, at the lr scaled to the batch of 2.
    assert recorded(runner, "RecordItersHook").iters == list(range(12, 24))
    seen = [
        i for batch in dict(recorded(runner, "RecordSamplesHook").samples).values() for i in batch
    ]
    assert sorted(seen) == list(range(24))
    assert recorded(runner, "RecordItersHook").lrs == pytest.approx([0.025 * 2 / 8] * 12)
    (log,) = read_logs(runner.work_dir)
    assert (
        "resuming with another setup: world size 2 -> 1, batch per process 2 -> 2, "
        "effective batch 4 -> 2, lr 0.025 -> 0.00625 (auto_scale_lr, base batch 8)"
    ) in log


def test_two_to_one_process_mid_epoch_covers_exactly_the_unseen_images(tmp_path, uninterrupted):
    runner = resume_in_one_process(tmp_path, uninterrupted / "iter_8.pth", batch_size=2)
    unseen = [
        i
        for rank in (0, 1)
        for it, batch in samples(uninterrupted, rank).items()
        if it >= 8
        for i in batch
    ]
    resumed = dict(recorded(runner, "RecordSamplesHook").samples)
    assert sorted(i for batch in resumed.values() for i in batch) == sorted(unseen)
    assert list(resumed) == list(range(16, 24))  # 16 images in 8 iterations of the 12-long epoch
    (log,) = read_logs(runner.work_dir)
    assert (
        "world size 2 -> 1, batch per process 2 -> 2, effective batch 4 -> 2, lr 0.025 -> 0.025 "
        "(auto_scale_lr off: the lr does not follow the batch; --auto-scale-lr scales it); "
        "the 16 images epoch 2 has not yet seen are split over 1 process"
    ) in log


def test_one_to_two_processes_at_an_epoch_boundary(tmp_path):
    hooks = [dict(type="RecordSamplesHook"), dict(type="DumpParamsHook")]
    setup = dict(model=NO_BATCH_NORM, custom_hooks=hooks)
    one = write_config(tmp_path / "one.py", **setup, **epoch_overrides(batch_size=2))
    train_tool.main(
        [one, "--work-dir", str(tmp_path / "one")]
    )  # 1 x 2 images, 12 iterations per epoch
    boundary = tmp_path / "one" / "iter_12.pth"

    two = write_config(tmp_path / "two.py", **setup, **epoch_overrides(batch_size=2))
    torchrun("train", two, "--work-dir", str(tmp_path / "two"), "--resume", str(boundary))
    # The same step in one process with the new global batch, 1 x 4 images.
    reference = write_config(tmp_path / "ref.py", **setup, **epoch_overrides(batch_size=4))
    train_tool.main([reference, "--work-dir", str(tmp_path / "ref"), "--resume", str(boundary)])

    difference = float(
        (params(tmp_path / "two", "after", 0) - params(tmp_path / "ref", "after", 0)).abs().max()
    )
    assert difference <= 1e-5
    seen = [
        i for rank in (0, 1) for batch in samples(tmp_path / "two", rank).values() for i in batch
    ]
    assert sorted(seen) == list(range(24))
    assert sorted(samples(tmp_path / "two", 0)) == list(range(6, 12))  # epoch 2 in 6 iterations
    log = read_logs(tmp_path / "two")[-1]
    assert (
        "resuming with another setup: world size 1 -> 2, batch per process 2 -> 2, "
        "effective batch 2 -> 4, lr 0.025 -> 0.025"
    ) in log


# ------------------------------------------------------------------ SyncBN


def test_sync_bn_on_cpu_is_refused_with_one_line(tmp_path):
    config = write_config(tmp_path / "sync.py", train_cfg=dict(by_epoch=False, max_iters=1))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), config, "--work-dir", str(tmp_path)]
        + ["--cfg-options", "sync_bn=torch"],
        cwd=REPO,
        env=torchrun_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: sync_bn='torch': torch.nn.SyncBatchNorm runs only on CUDA GPUs")


@pytest.mark.parametrize("recipe", ["configs/ssdlite_coco.py", "configs/deeplabv3_voc.py"])
def test_detector_and_segmenter_recipes_have_a_sync_bn_switch(tmp_path, recipe):
    cfg = load_config(REPO / recipe, {"sync_bn": "torch"})
    assert load_config(REPO / recipe).sync_bn is None  # off by default
    cfg.work_dir = str(tmp_path)
    if torch.cuda.is_available():
        pytest.skip("with CUDA the switch is accepted; this checks the CPU refusal")
    with pytest.raises(ConfigError, match="sync_bn='torch'"):
        Runner.from_cfg(cfg)
