"""Resume continues training exactly: mid-epoch position, another batch, the lr, torchrun restarts.

One process, in this process; the multi-process versions (torchrun) are in
test_engine_distributed.py. Changing the batch per process changes the
iterations per epoch exactly as changing the number of processes does, so the
same code is exercised.
"""

import math

import pytest
import torch
from engine_toy import SimulatedCrash, epoch_overrides, load_tool, read_logs, write_config

from mtvision.engine import load_checkpoint_file
from mtvision.errors import ConfigError

train_tool = load_tool("train")


def train(tmp_path, name, *args, work_dir=None, custom_hooks=None, **overrides):
    """tools/train.py in this process on an epoch-based toy config; returns the runner."""
    overrides = epoch_overrides(**overrides)
    config = write_config(
        tmp_path / f"{name}.py",
        experiment_name=f"{tmp_path.name}_{name}",
        custom_hooks=custom_hooks or [dict(type="RecordItersHook"), dict(type="RecordSamplesHook")],
        **overrides,
    )
    return train_tool.main([config, "--work-dir", str(work_dir or tmp_path / name), *args])


def hook(runner, name):
    return next(h for h in runner.hooks if type(h).__name__ == name)


def samples_by_iter(runner) -> dict[int, list[int]]:
    return dict(hook(runner, "RecordSamplesHook").samples)


def max_param_diff(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """2 epochs of 6 iterations (batch 4), uninterrupted; checkpoints every 2 iterations."""
    tmp_path = tmp_path_factory.mktemp("epochs")
    return train(tmp_path, "full")


def test_mid_epoch_resume_skips_what_the_epoch_has_seen(tmp_path, full):
    work_dir = tmp_path / "split"
    crash_hooks = [dict(type="CrashAfterIterHook", iters=9)]
    with pytest.raises(SimulatedCrash):
        train(tmp_path, "crash", work_dir=work_dir, custom_hooks=crash_hooks)
    progress = load_checkpoint_file(work_dir / "iter_8.pth")["meta"]["train_progress"]
    assert progress["epoch"] == 1 and progress["epoch_samples_seen"] == 8  # 2 of 6 batches

    runner = train(tmp_path, "resume", "--resume", work_dir=work_dir)

    # mmengine alone would train on the epoch's first 2 batches again (iterations 8..13).
    assert hook(runner, "RecordItersHook").iters == [8, 9, 10, 11]
    expected = samples_by_iter(full)
    assert samples_by_iter(runner) == {i: expected[i] for i in (8, 9, 10, 11)}
    want = load_checkpoint_file(full.work_dir + "/iter_12.pth")["state_dict"]
    got = load_checkpoint_file(work_dir / "iter_12.pth")["state_dict"]
    assert max_param_diff(got, want) <= 1e-6


def test_mid_epoch_resume_with_another_batch_covers_exactly_the_unseen_images(tmp_path, full):
    checkpoint = full.work_dir + "/iter_8.pth"  # batch 4, 8 of epoch 2's 24 images seen
    runner = train(tmp_path, "half", "--resume", checkpoint, "--auto-scale-lr", batch_size=2)

    unseen = sorted(i for it in (8, 9, 10, 11) for i in samples_by_iter(full)[it])
    resumed = samples_by_iter(runner)
    assert sorted(i for batch in resumed.values() for i in batch) == unseen
    # 16 images in batches of 2; iterations counted in the new epoch length (12).
    assert list(resumed) == list(range(16, 24))
    assert (tmp_path / "half" / "iter_24.pth").is_file()
    # lr at iteration 8 of the toy schedule: 0.1 x 0.5 x 0.5; auto_scale_lr x 2 / 8.
    assert hook(runner, "RecordItersHook").lrs == pytest.approx([0.025 * 0.25] * 8, rel=1e-9)
    (log,) = read_logs(tmp_path / "half")
    assert (
        "resuming with another setup: world size 1 -> 1, batch per process 4 -> 2, "
        "effective batch 4 -> 2, lr 0.025 -> 0.00625 (auto_scale_lr, base batch 8); "
        "the 16 images epoch 2 has not yet seen are split over 1 process"
    ) in log


def test_epoch_boundary_resume_keeps_an_epoch_schedule_in_epochs(tmp_path):
    """A cosine over 2 epochs, stepped per iteration (convert_to_iter_based)."""
    cosine = dict(
        type="CosineAnnealingLR", by_epoch=True, begin=0, end=2, convert_to_iter_based=True
    )
    first = train(tmp_path, "first", param_scheduler=cosine)  # batch 4: 6 iterations per epoch
    # Resume from the end of epoch 1 with batch 2 (12 iterations per epoch) ...
    resumed = train(
        tmp_path,
        "second",
        "--resume",
        first.work_dir + "/iter_6.pth",
        param_scheduler=cosine,
        batch_size=2,
    )
    # ... is where a run with batch 2 from the start would be in epoch 2.
    reference = train(tmp_path, "reference", param_scheduler=cosine, batch_size=2)
    resumed_lrs = hook(resumed, "RecordItersHook").lrs
    assert hook(resumed, "RecordItersHook").iters == list(range(12, 24))
    assert resumed_lrs == pytest.approx(hook(reference, "RecordItersHook").lrs[12:], abs=1e-12)
    assert resumed_lrs[0] == pytest.approx(0.05, abs=1e-12)  # half-way down the cosine
    assert sorted(i for b in samples_by_iter(resumed).values() for i in b) == list(range(24))
    (log,) = read_logs(tmp_path / "second")
    assert "effective batch 4 -> 2, lr 0.05 -> 0.05 (auto_scale_lr off" in log


def test_iteration_based_resume_with_another_effective_batch_is_refused(tmp_path):
    loop = dict(train_cfg=dict(by_epoch=False, max_iters=4))
    first = train(tmp_path, "iters", **loop)
    with pytest.raises(ConfigError) as error:
        train(tmp_path, "again", "--resume", first.work_dir + "/iter_4.pth", batch_size=2, **loop)
    message = str(error.value)
    assert "iter_4.pth" in message and "effective batch of 4 (1 x 4)" in message
    assert "keep the effective batch" in message and "\n" not in message


def test_effective_batch_and_lr_are_logged_at_start(tmp_path):
    plain = train(tmp_path, "plain", train_cfg=dict(by_epoch=True, max_epochs=1))
    scaled = train(
        tmp_path, "scaled", "--auto-scale-lr", train_cfg=dict(by_epoch=True, max_epochs=1)
    )
    (plain_log,) = read_logs(plain.work_dir)
    (scaled_log,) = read_logs(scaled.work_dir)
    assert (
        "effective batch 4 (1 process x 4 images); lr 0.1 as configured for a batch of 8 "
        "(auto_scale_lr off; --auto-scale-lr would scale it x0.5)"
    ) in plain_log
    assert (
        "effective batch 4 (1 process x 4 images); lr 0.1 -> 0.05 "
        "(auto_scale_lr: x0.5 = 4 / base batch 8)"
    ) in scaled_log
    assert hook(scaled, "RecordItersHook").lrs[0] == pytest.approx(0.05)


def test_torchrun_restart_resumes_from_the_work_dir_by_itself(tmp_path, full, monkeypatch):
    work_dir = tmp_path / "elastic"
    with pytest.raises(SimulatedCrash):
        train(
            tmp_path,
            "crash",
            work_dir=work_dir,
            custom_hooks=[dict(type="CrashAfterIterHook", iters=9)],
        )
    # What torchrun sets in the workers it starts again; the command line is unchanged.
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    runner = train(tmp_path, "restarted", work_dir=work_dir)
    assert hook(runner, "RecordItersHook").iters == [8, 9, 10, 11]
    assert (
        f"torchrun restarted the workers (restart 1): resuming from {work_dir}/last.pth"
        in (read_logs(work_dir)[-1])
    )
    want = load_checkpoint_file(full.work_dir + "/iter_12.pth")["state_dict"]
    assert (
        max_param_diff(load_checkpoint_file(work_dir / "iter_12.pth")["state_dict"], want) <= 1e-6
    )


def test_torchrun_restart_before_the_first_checkpoint_starts_over(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    runner = train(tmp_path, "early", train_cfg=dict(by_epoch=True, max_epochs=1))
    assert hook(runner, "RecordItersHook").iters == list(range(6))
    assert (
        "restart 1): no checkpoint in the work dir yet, starting as the command says"
        in read_logs(runner.work_dir)[-1]
    )


def test_epoch_length_in_the_progress_record(full):
    progress = load_checkpoint_file(full.work_dir + "/iter_6.pth")["meta"]["train_progress"]
    assert progress == dict(
        world_size=1,
        batch_size=4,
        lr_scale=1.0,
        by_epoch=True,
        iters_per_epoch=math.ceil(24 / 4),
        dataset_length=24,
        epoch=0,
        epoch_samples_seen=24,
    )
    assert torch.is_tensor(
        load_checkpoint_file(full.work_dir + "/iter_6.pth")["state_dict"]["fc.bias"]
    )
