"""Checkpoints: weights-only loading, exact resume, atomic writes, ``last.pth``."""

import collections
import errno
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from engine_toy import SimulatedCrash, load_tool, read_logs, write_config
from mmengine.runner import CheckpointLoader

from mtvision.engine import Runner, load_checkpoint_file, load_config
from mtvision.engine.cli import run_cli
from mtvision.errors import CheckpointError, OutputError

train_tool = load_tool("train")


def train(tmp_path, name, **overrides):
    """Run tools/train.py in this process on a toy config; returns the runner."""
    config = write_config(
        tmp_path / f"{name}.py", experiment_name=f"{tmp_path.name}_{name}", **overrides
    )
    return train_tool.main([config, "--work-dir", str(tmp_path / name)])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """8 iterations in one go (checkpoints at 4 and 8)."""
    tmp_path = tmp_path_factory.mktemp("full")
    train(tmp_path, "full")
    return tmp_path / "full"


def record_iters_hook(runner):
    return next(h for h in runner.hooks if type(h).__name__ == "RecordItersHook")


def test_resume_reproduces_uninterrupted_training(tmp_path, full_run):
    half = tmp_path / "split"
    crashing = write_config(
        tmp_path / "split.py",
        experiment_name=f"{tmp_path.name}_crash",
        custom_hooks=[dict(type="RecordItersHook"), dict(type="CrashAfterIterHook", iters=4)],
    )
    with pytest.raises(SimulatedCrash):
        train_tool.main([crashing, "--work-dir", str(half)])
    assert not (half / "iter_8.pth").exists()
    # mmengine's pointer file, written non-atomically by the CheckpointHook,
    # as a crash could leave it: auto-resume must not depend on it.
    (half / "last_checkpoint").write_text("")

    config = write_config(tmp_path / "resume.py", experiment_name=f"{tmp_path.name}_resume")
    runner = train_tool.main([config, "--work-dir", str(half), "--resume"])

    assert record_iters_hook(runner).iters == [4, 5, 6, 7]  # resumed, did not restart
    expected = load_checkpoint_file(full_run / "iter_8.pth")
    resumed = load_checkpoint_file(half / "iter_8.pth")
    assert resumed["meta"]["iter"] == expected["meta"]["iter"] == 8
    for key, value in expected["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, atol=1e-6, rtol=0)
    momentum = [s["momentum_buffer"] for s in expected["optimizer"]["state"].values()]
    resumed_momentum = [s["momentum_buffer"] for s in resumed["optimizer"]["state"].values()]
    assert len(momentum) == 5  # conv, bn weight/bias, fc weight/bias
    for got, want in zip(resumed_momentum, momentum, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert resumed["param_schedulers"] == expected["param_schedulers"]
    assert runner.optim_wrapper.get_lr()["lr"] == pytest.approx([0.1 * 0.5**2])


def test_resume_from_explicit_checkpoint(tmp_path, full_run):
    config = write_config(tmp_path / "cfg.py", experiment_name=f"{tmp_path.name}_explicit")
    runner = train_tool.main(
        [config, "--work-dir", str(tmp_path / "wd"), "--resume", str(full_run / "iter_4.pth")]
    )
    assert record_iters_hook(runner).iters == [4, 5, 6, 7]
    want = load_checkpoint_file(full_run / "iter_8.pth")["state_dict"]
    got = load_checkpoint_file(tmp_path / "wd" / "iter_8.pth")["state_dict"]
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0)


def test_resume_from_bare_weights_is_explained(tmp_path, full_run):
    weights = tmp_path / "weights.pth"
    torch.save({"state_dict": load_checkpoint_file(full_run / "iter_8.pth")["state_dict"]}, weights)
    config = write_config(tmp_path / "cfg.py", experiment_name=f"{tmp_path.name}_bare")
    with pytest.raises(CheckpointError, match="not a resumable training checkpoint") as error:
        train_tool.main([config, "--work-dir", str(tmp_path / "wd"), "--resume", str(weights)])
    assert str(weights) in str(error.value)


def test_load_from_sets_weights(tmp_path, full_run):
    config = write_config(
        tmp_path / "cfg.py",
        experiment_name=f"{tmp_path.name}_load_from",
        load_from=str(full_run / "iter_8.pth"),
    )
    cfg = load_config(config)
    cfg.work_dir = str(tmp_path / "wd")
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    want = load_checkpoint_file(full_run / "iter_8.pth")["state_dict"]
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, want[key]), key


def test_last_pth_is_the_latest_checkpoint(full_run):
    assert (full_run / "last.pth").read_bytes() == (full_run / "iter_8.pth").read_bytes()


def test_real_checkpoint_loads_with_weights_only(full_run):
    """The allow-list is exactly enough for what mmengine writes: this must not raise."""
    with pytest.raises(pickle.UnpicklingError):
        torch.load(full_run / "iter_8.pth", weights_only=True)  # torch alone refuses it
    checkpoint = load_checkpoint_file(full_run / "iter_8.pth")
    buffer = checkpoint["message_hub"]["log_scalars"]["train/loss"]
    assert len(buffer.data[0]) == 8


class _Payload:
    """Pickles as ``os.system(command)``: runs the command when unpickled unsafely."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _OrderedDictSubclass(collections.OrderedDict):
    pass


def test_code_execution_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": _Payload(f"touch {marker}")}, checkpoint)
    with pytest.raises(CheckpointError) as error:
        CheckpointLoader.load_checkpoint(str(checkpoint))  # mmengine's entry point
    message = str(error.value)
    assert str(checkpoint) in message and "system" in message and "refused" in message
    assert not marker.exists()


def test_unknown_class_is_refused(tmp_path):
    checkpoint = tmp_path / "subclass.pth"
    torch.save({"state_dict": _OrderedDictSubclass(w=torch.ones(1))}, checkpoint)
    with pytest.raises(CheckpointError, match="_OrderedDictSubclass") as error:
        load_checkpoint_file(checkpoint)
    assert str(checkpoint) in str(error.value)


def test_truncated_and_missing_files_are_named(tmp_path, full_run):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((full_run / "iter_8.pth").read_bytes()[:4000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        load_checkpoint_file(truncated)
    assert str(truncated) in str(error.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint_file(tmp_path / "missing.pth")


def _checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.arange(64.0)}, "meta": {}}, buffer)
    return buffer.getvalue()


def _zip_without_pickle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights/readme.txt", "not a checkpoint")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data, problem",
    [
        ("cut.pth", lambda: _checkpoint_bytes()[:300], "the file is truncated or corrupt "
         "(RuntimeError: PytorchStreamReader failed reading zip archive: failed finding "
         "central directory)"),
        ("empty.pth", lambda: b"", "the file is empty"),
        ("notes.pth", lambda: b"epoch 3, loss 0.12\n", "it is a text file, not a checkpoint"),
        ("weights.pth", _zip_without_pickle, "it is a zip archive without data.pkl, not a "
         "checkpoint torch.save wrote"),
        ("mobilenet.tflite", lambda: b"\x1c\x00\x00\x00TFL3" + bytes(range(200)),
         "it is a TensorFlow Lite file, not a checkpoint; convert it with "
         "tools/convert_weights.py"),
    ],
)  # fmt: skip
def test_unreadable_and_foreign_files_are_one_line(tmp_path, capsys, name, data, problem):
    """What torch.load raises about a file that is not a checkpoint (a miniz error
    with hints, a KeyError from the unpickler, ...) becomes one line naming the file,
    also through a tool."""
    path = tmp_path / name
    path.write_bytes(data())
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_file(path)
    assert str(error.value) == f"{path}: cannot read the checkpoint, {problem}"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: load_tool("export_onnx").main(
            ["configs/demo/ssdlite_shapes.py", str(path), "--out", str(tmp_path / "a.onnx")]
        ))  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {path}: cannot read the checkpoint, {problem}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_folder_given_as_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_file(tmp_path)
    assert str(error.value) == f"{tmp_path} is a folder, not a checkpoint file"


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    runner = train(tmp_path, "crash", train_cfg=dict(by_epoch=False, max_iters=4))
    work_dir = Path(runner.work_dir)
    before = (work_dir / "iter_4.pth").read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The checkpoint bytes have been written when fsync fails: a crash at
    # this point must leave neither a partial iter_4.pth nor a stray file.
    monkeypatch.setattr(os, "fsync", disk_full)
    with torch.no_grad():
        for parameter in runner.model.parameters():
            parameter.add_(1.0)
    runner.message_hub.update_info("last_ckpt", str(work_dir / "iter_4.pth"))
    with pytest.raises(OutputError, match="iter_4.pth: the disk is full") as error:
        runner.save_checkpoint(str(work_dir), "iter_4.pth")
    assert "\n" not in str(error.value) and "unchanged" in str(error.value)
    monkeypatch.undo()

    assert (work_dir / "iter_4.pth").read_bytes() == before
    assert (work_dir / "last.pth").read_bytes() == before
    assert not [p for p in os.listdir(work_dir) if p.endswith(".tmp")]
    assert load_checkpoint_file(work_dir / "iter_4.pth")["meta"]["iter"] == 4


# ------------------------------------ load_from accepts what every weight loader accepts


def _runner(tmp_path, name):
    config = write_config(tmp_path / f"{name}.py", experiment_name=f"{tmp_path.name}_{name}")
    cfg = load_config(config)
    cfg.work_dir = str(tmp_path / name)
    return Runner.from_cfg(cfg)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda w: {"state_dict": {f"module.{k}": v for k, v in w.items()}, "meta": {}},
        lambda w: {"model": w, "model_ema": w, "epoch": 3},  # torchvision's reference scripts
        lambda w: {f"_orig_mod.{k}": v for k, v in w.items()},  # saved from torch.compile
        lambda w: {"state_dict_ema": w},
    ],
    ids=["DDP", "model", "compiled", "ema-only"],
)
def test_load_from_unwraps_like_every_loader(tmp_path, full_run, wrap):
    weights = load_checkpoint_file(full_run / "iter_8.pth")["state_dict"]
    path = tmp_path / "weights.pth"
    torch.save(wrap(weights), path)
    runner = _runner(tmp_path, "wrapped")
    runner.load_checkpoint(str(path))
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_load_from_refuses_in_one_line(tmp_path, full_run):
    weights = load_checkpoint_file(full_run / "iter_8.pth")["state_dict"]
    runner = _runner(tmp_path, "refused")
    both = tmp_path / "both.pth"
    torch.save({"state_dict": weights, "model": weights}, both)
    with pytest.raises(CheckpointError, match=r"both.pth: holds weights under 'state_dict', "
                       r"'model'; load one of them"):  # fmt: skip
        runner.load_checkpoint(str(both))
    other = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.zeros(3), "head.bias": torch.zeros(2)}, other)
    for strict in (True, False):
        with pytest.raises(CheckpointError) as error:
            runner.load_checkpoint(str(other), strict=strict)
        message = str(error.value)
        assert message.startswith(f"{other}: the weights do not fit ToyClassifier (0 of ")
        assert "not one of the model's" in message and "\n" not in message
    narrower = tmp_path / "narrower.pth"
    torch.save({k: v[:2] if v.ndim else v for k, v in weights.items()}, narrower)
    with pytest.raises(CheckpointError, match=r"shape mismatches: conv.weight: weights \(2, 3, 3, "
                       r"3\) vs model \(4, 3, 3, 3\)"):  # fmt: skip
        runner.load_checkpoint(str(narrower), strict=False)  # mmengine would only warn


# --------------------------------- auto-resume past a damaged newest checkpoint


def copy_work_dir(source: Path, target: Path) -> Path:
    """The checkpoints of ``source`` as separate files in ``target`` (no hard links)."""
    target.mkdir()
    for name in ("iter_4.pth", "iter_8.pth", "last.pth"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def truncate(path: Path) -> None:
    """What a crash part-way through writing in place leaves behind."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_corrupt_last_checkpoint_falls_back_to_the_previous_good_one(tmp_path, full_run):
    work_dir = copy_work_dir(full_run, tmp_path / "wd")
    truncate(work_dir / "last.pth")
    truncate(work_dir / "iter_8.pth")
    config = write_config(
        tmp_path / "cfg.py", experiment_name=f"{tmp_path.name}_fallback", log_level="INFO"
    )
    runner = train_tool.main([config, "--work-dir", str(work_dir), "--resume"])

    assert record_iters_hook(runner).iters == [4, 5, 6, 7]
    (log,) = read_logs(work_dir)
    for skipped in ("last.pth", "iter_8.pth"):
        assert f"skipping checkpoint {work_dir / skipped}: cannot read the checkpoint, " in log
    assert f"resuming from {work_dir / 'iter_4.pth'} instead" in log
    want = load_checkpoint_file(full_run / "iter_8.pth")["state_dict"]
    got = load_checkpoint_file(work_dir / "iter_8.pth")["state_dict"]
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0)


def test_no_readable_checkpoint_names_every_file_tried(tmp_path, full_run):
    work_dir = copy_work_dir(full_run, tmp_path / "wd")
    for name in ("iter_4.pth", "iter_8.pth", "last.pth"):
        truncate(work_dir / name)
    config = write_config(tmp_path / "cfg.py", experiment_name=f"{tmp_path.name}_none")
    with pytest.raises(CheckpointError) as error:
        train_tool.main([config, "--work-dir", str(work_dir), "--resume"])
    message = str(error.value)
    assert message.startswith(f"{work_dir}: none of its checkpoints loads")
    for name in ("iter_4.pth", "iter_8.pth", "last.pth"):
        assert str(work_dir / name) in message


def test_resume_without_checkpoints_starts_from_the_beginning(tmp_path):
    config = write_config(
        tmp_path / "cfg.py",
        experiment_name=f"{tmp_path.name}_fresh",
        train_cfg=dict(by_epoch=False, max_iters=2),
    )
    runner = train_tool.main([config, "--work-dir", str(tmp_path / "empty"), "--resume"])
    assert record_iters_hook(runner).iters == [0, 1]
