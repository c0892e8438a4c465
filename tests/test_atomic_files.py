"""Output files (mtvision/utils/atomic_files.py): paths checked before the work,
verify-then-commit, and write errors as one line that leaves the previous file intact."""

import errno
import os
import time

import pytest
from engine_toy import load_tool

from mtvision.engine.cli import run_cli
from mtvision.errors import OutputError
from mtvision.utils.atomic_files import (
    atomic_write_bytes,
    check_output_dir,
    check_output_file,
    staged_file,
)

DEMO_CONFIG = "configs/demo/ssdlite_shapes.py"


def _tree(root) -> dict:
    """Every path under ``root`` with its bytes (None for folders): what a check may not touch."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, root)] = file.read()
    return found


def test_output_file_that_is_a_folder_or_below_a_file_is_refused(tmp_path):
    folder = tmp_path / "outdir"
    folder.mkdir()
    (tmp_path / "plain").write_text("x")
    before = _tree(tmp_path)
    with pytest.raises(OutputError) as error:
        check_output_file(folder, "--out", example="model.onnx")
    assert str(error.value) == (
        f"--out {folder} is a folder; give a file name such as {folder / 'model.onnx'}"
    )
    with pytest.raises(OutputError) as error:
        check_output_file(tmp_path / "plain" / "sub" / "a.onnx", "--out")
    assert str(error.value) == (
        f"--out {tmp_path / 'plain' / 'sub' / 'a.onnx'}: {tmp_path / 'plain'} is a file, "
        "not a folder"
    )
    # Folders that do not exist yet are fine, and are not created by the check.
    assert check_output_file(tmp_path / "new" / "deep" / "a.onnx", "--out")
    assert _tree(tmp_path) == before


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    existing = tmp_path / "det.onnx"
    existing.write_bytes(b"onnx bytes")
    with pytest.raises(OutputError) as error:
        check_output_dir(existing, "--out-dir")
    assert str(error.value) == f"--out-dir {existing} is a file; give a folder"
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(existing / "below", "--out-dir")
    assert check_output_dir(tmp_path / "a" / "b", "--out-dir") and not (tmp_path / "a").exists()
    assert existing.read_bytes() == b"onnx bytes"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_output_in_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            check_output_file(locked / "a.onnx", "--out")
        with pytest.raises(OutputError, match=f"cannot create folders in {locked}"):
            check_output_dir(locked / "new", "--work-dir")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(
    "code, problem",
    [
        (errno.ENOSPC, "the disk is full (no space left on device)"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "the filesystem is read-only"),
    ],
)
def test_write_error_names_the_file_and_keeps_the_previous_one(
    tmp_path, monkeypatch, code, problem
):
    target = tmp_path / "model.pth"
    target.write_bytes(b"previous, good")

    def failing_fsync(fd):  # the bytes are written; the disk refuses to keep them
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError) as error:
        atomic_write_bytes(target, b"new")
    assert (
        str(error.value) == f"cannot write {target}: {problem}; the previous {target} is unchanged"
    )
    assert error.value.errno == code
    assert target.read_bytes() == b"previous, good"
    assert sorted(os.listdir(tmp_path)) == ["model.pth"]  # no temporary file left


def test_write_error_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    target = tmp_path / "new.bin"

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: atomic_write_bytes(target, b"data"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {target}: the disk is full (no space left on device)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_staged_file_replaces_only_after_the_block_succeeds(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"accepted")
    with pytest.raises(ValueError, match="check failed"):
        with staged_file(target) as staged:
            assert os.path.dirname(staged) == str(tmp_path) and staged.endswith(".onnx")
            with open(staged, "wb") as file:
                file.write(b"rejected")
            raise ValueError("check failed")
    assert target.read_bytes() == b"accepted"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]

    with staged_file(target) as staged:
        with open(staged, "wb") as file:
            file.write(b"verified")
    assert target.read_bytes() == b"verified"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]


# Each tool checks its output paths first: the checkpoint given does not even exist, and
# the error is about the output path (nothing built, trained, loaded or written).
TOOL_CASES = [
    ("export_onnx", ["CONFIG", "missing.pth", "--out", "FOLDER"], "--out FOLDER is a folder"),
    ("quantize", ["CONFIG", "missing.onnx", "--out", "FOLDER", "--calib", "2"], "--out FOLDER"),
    ("visualize", ["CONFIG", "missing.pth", "--out", "FOLDER.png"], "--out FOLDER.png is a folder"),
    ("eval", ["CONFIG", "missing.pth", "--out", "FOLDER.json"], "--out FOLDER.json is a folder"),
    ("eval", ["CONFIG", "missing.pth", "--show-dir", "FILE"], "--show-dir FILE is a file"),
    ("eval", ["CONFIG", "missing.pth", "--work-dir", "FILE"], "--work-dir FILE is a file"),
    ("train", ["CONFIG", "--work-dir", "FILE"], "--work-dir FILE is a file"),
    (
        "predict",
        ["CONFIG", "missing.pth", "x.jpg", "--out-dir", "FILE"],
        "--out-dir FILE is a file",
    ),
    ("plot_curves", ["missing_run", "--out", "FOLDER"], "--out FOLDER is a folder"),
    ("convert_weights", ["missing.tflite", "--out", "FOLDER"], "--out FOLDER is a folder"),
]


@pytest.mark.parametrize("tool, argv, message", TOOL_CASES, ids=[c[0] for c in TOOL_CASES])
def test_tools_check_output_paths_before_any_work(tmp_path, capsys, tool, argv, message):
    folder = tmp_path / "outdir"
    (folder.with_suffix(".png")).mkdir()
    (folder.with_suffix(".json")).mkdir()
    folder.mkdir()
    file = tmp_path / "det.onnx"
    file.write_bytes(b"previous")
    names = {"CONFIG": DEMO_CONFIG, "FOLDER": str(folder), "FILE": str(file)}
    names["FOLDER.png"], names["FOLDER.json"] = f"{folder}.png", f"{folder}.json"
    argv = [names.get(a, str(tmp_path / a) if "missing" in a else a) for a in argv]
    message = " ".join(names.get(word, word) for word in message.split(" "))
    before = _tree(tmp_path)
    main = load_tool(tool).main
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), errors
    assert _tree(tmp_path) == before
    assert time.perf_counter() - start < 5  # before building a model or reading data


def test_staged_write_error_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "model.int8.onnx"
    target.write_bytes(b"previous")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputError) as error:
        with staged_file(target) as staged:
            atomic_write_bytes(staged, b"new int8 graph")
    assert str(error.value) == (
        f"cannot write {target}: the disk is full (no space left on device); the previous "
        f"{target} is unchanged"
    )
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["model.int8.onnx"]
