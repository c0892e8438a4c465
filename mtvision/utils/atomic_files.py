"""Crash-safe file writes, output paths checked before the work, verify-then-commit.

mmengine's ``save_checkpoint`` hands the serialised checkpoint to the file
backend's ``put``, and the stock ``LocalBackend.put`` opens the final path with
``'wb'``: a process killed mid-write leaves a truncated file under the name of
the checkpoint. Here every local write goes to a temporary file in the same
directory, is flushed and fsync'ed, and only then renamed over the final name
(``os.replace`` is atomic on POSIX and Windows), so a reader sees either the old
file or the complete new one.

Before a tool starts its work, :func:`check_output_file` / :func:`check_output_dir`
(or :func:`check_output_paths` for several) say in one line when an output path
cannot be used (a file name that is a folder, a folder that is a file, a parent
that cannot be created or written in), touching nothing. A file that must pass a
check before it may replace the previous one (an export compared with torch, an
int8 graph) is written through :func:`staged_file`: to a temporary file beside
the target, checked there, and renamed over the target only when the check
passed. Write errors (full disk, no permission, read-only filesystem) become
:class:`~mtvision.errors.OutputError`, one line naming the final file, and leave
the previous file intact.

Importing this module registers :class:`AtomicLocalBackend` as mmengine's
``'local'`` backend (the one used for paths without a ``scheme://`` prefix).
"""

import contextlib
import errno
import os
import os.path as osp
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend

from mtvision.errors import OutputError

#: What the usual write errors mean, in the words of :func:`write_error`.
_WRITE_PROBLEMS = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the filesystem is read-only",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of its folder path is a file",
    errno.ENAMETOOLONG: "the name is too long",
}


def _output_error(code: int | None, message: str) -> OutputError:
    """An :class:`OutputError` whose text is ``message`` alone (no ``[Errno N]``)."""
    error = OutputError(message)
    error.errno = code
    return error


def write_error(error: OSError, path: str | os.PathLike, staged: str | None = None) -> OutputError:
    """``error`` (raised while writing ``path``, or its ``staged`` temporary file) as one
    :class:`OutputError` line naming ``path`` and, when ``path`` exists, saying it is
    unchanged."""
    if isinstance(error, OutputError) and staged is None:
        return error
    path = os.fspath(path)
    problem = _WRITE_PROBLEMS.get(error.errno) or error.strerror or str(error)
    if staged is not None:
        problem = problem.replace(staged, path)
    kept = f"; the previous {path} is unchanged" if osp.isfile(path) else ""
    return _output_error(error.errno, f"cannot write {path}: {problem}{kept}")


def _nearest_existing(path: str) -> str:
    """``path`` or its nearest ancestor that exists (``path`` absolute)."""
    while not osp.lexists(path):
        parent = osp.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_folder_can_hold(folder: str, option: str, path: str) -> None:
    """``folder`` exists as a writable folder, or can be created (its nearest existing
    ancestor is one)."""
    existing = _nearest_existing(osp.abspath(folder))
    if not osp.isdir(existing):
        raise _output_error(errno.ENOTDIR, f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write in" if existing == osp.abspath(folder) else "create folders in"
        raise _output_error(
            errno.EACCES, f"{option} {path}: cannot {what} {existing} (permission denied)"
        )


def check_output_file(
    path: str | os.PathLike, option: str = "output", example: str | None = None
) -> str:
    """Raise :class:`OutputError` unless a file can be written at ``path``; touch nothing.

    Refused: an existing folder (the message suggests ``path/<example>`` when
    ``example`` is given, e.g. ``"model.onnx"``), a name ending in a path
    separator, and a parent folder that is a file, cannot be created or is not
    writable. ``option`` names the path in the message (``"--out"``). Returns
    ``path`` as a string.
    """
    path = os.fspath(path)
    if not path:
        raise _output_error(errno.ENOENT, f"{option}: the file name is empty")
    if osp.isdir(path) or path.endswith(("/", os.sep)):
        hint = f" such as {osp.join(path, example)}" if example else " inside it"
        raise _output_error(errno.EISDIR, f"{option} {path} is a folder; give a file name{hint}")
    _check_folder_can_hold(osp.dirname(osp.abspath(path)), option, path)
    return path


def check_output_dir(path: str | os.PathLike, option: str = "output folder") -> str:
    """Raise :class:`OutputError` unless ``path`` is a writable folder or can be created
    as one (it is not a file, nor below one); touch nothing. Returns ``path``."""
    path = os.fspath(path)
    if not path:
        raise _output_error(errno.ENOENT, f"{option}: the folder name is empty")
    if osp.lexists(path) and not osp.isdir(path):
        raise _output_error(errno.ENOTDIR, f"{option} {path} is a file; give a folder")
    _check_folder_can_hold(path, option, path)
    return path


def check_output_paths(
    files: dict[str, str | None] | None = None, dirs: dict[str, str | None] | None = None
) -> None:
    """:func:`check_output_file` for each ``{option: path}`` of ``files`` and
    :func:`check_output_dir` for each of ``dirs``; ``None`` paths (options not given)
    are skipped. For a tool to call first, before any work."""
    for option, path in (files or {}).items():
        if path is not None:
            check_output_file(path, option)
    for option, path in (dirs or {}).items():
        if path is not None:
            check_output_dir(path, option)


def _temp_path_for(path: str) -> str:
    """A unique hidden name next to ``path`` (same directory, so same filesystem)."""
    directory, name = osp.split(osp.abspath(path))
    return osp.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync_directory(directory: str) -> None:
    """Persist a rename: the new directory entry is only durable once the directory is synced.

    Best effort: some filesystems (network, FUSE) refuse fsync on a directory,
    and the rename is atomic either way.
    """
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _replace_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write(file)`` into a temporary file, then rename it to ``path``.

    Raises :class:`OutputError` (one line naming ``path``) for an ``OSError`` while
    creating the folder, writing or renaming; ``path`` is then as it was.
    """
    shown = path
    path = osp.abspath(path)
    if osp.isdir(path):
        raise _output_error(errno.EISDIR, f"cannot write {shown}: it is a folder")
    temp = _temp_path_for(path)
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        # 'xb' rather than mkstemp: the file gets the usual umask-based mode.
        with open(temp, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as error:
        if osp.lexists(temp):
            os.remove(temp)
        if isinstance(error, OSError):
            raise write_error(error, shown) from error
        raise
    _fsync_directory(osp.dirname(path))


@contextlib.contextmanager
def staged_file(path: str | os.PathLike) -> Iterator[str]:
    """Verify-then-commit: a temporary name beside ``path`` to write and check the new
    file under; when the block ends without an error it is renamed over ``path``
    (atomically), and when the block raises it is removed and ``path`` is untouched.

    So a file that fails its check never replaces the previous one::

        with staged_file("model.onnx") as staged:
            write(staged)
            check(staged)  # raises: model.onnx stays the previous file

    The temporary name keeps ``path``'s suffix (readers that go by it still work).
    Raises :class:`OutputError` when the rename fails.
    """
    shown = os.fspath(path)
    target = osp.abspath(shown)
    directory, name = osp.split(target)
    stem, suffix = osp.splitext(name)
    temp = osp.join(directory, f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.staged{suffix}")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise write_error(error, shown) from error
    try:
        try:
            yield temp
        except OSError as error:
            # Writing the staged file failed (full disk, ...): name the target, not it.
            if temp in str(error) or getattr(error, "filename", None) == temp:
                raise write_error(error, shown, staged=temp) from error
            raise
        if not osp.isfile(temp):
            raise _output_error(errno.ENOENT, f"cannot write {shown}: nothing was written")
        try:
            os.replace(temp, target)
        except OSError as error:
            raise write_error(error, shown) from error
    finally:
        if osp.lexists(temp):
            os.remove(temp)
    _fsync_directory(directory)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that no reader ever sees a partial file."""
    _replace_atomically(str(path), lambda file: file.write(data))


def atomic_publish(source: str | Path, target: str | Path) -> None:
    """Make ``target`` an up-to-date alias of ``source``, atomically.

    A hard link costs no space or time; where links are not possible (another
    filesystem, filesystems without links) the bytes are copied instead.
    """
    source, target = osp.abspath(source), osp.abspath(target)
    if source == target:
        return
    temp = _temp_path_for(target)
    try:
        os.link(source, temp)
    except OSError:
        with open(source, "rb") as src:
            _replace_atomically(target, lambda file: shutil.copyfileobj(src, file))
        return
    try:
        os.replace(temp, target)
    except BaseException as error:
        os.remove(temp)
        if isinstance(error, OSError):
            raise write_error(error, target) from error
        raise
    _fsync_directory(osp.dirname(target))


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(filepath, obj.encode(encoding))


register_backend("local", AtomicLocalBackend, force=True, prefixes="")
