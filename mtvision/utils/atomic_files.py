"""Crash-safe file writes for checkpoints.

mmengine's ``save_checkpoint`` hands the serialised checkpoint to the file
backend's ``put``, and the stock ``LocalBackend.put`` opens the final path with
``'wb'``: a process killed mid-write leaves a truncated file under the name of
the checkpoint. Here every local write goes to a temporary file in the same
directory, is flushed and fsync'ed, and only then renamed over the final name
(``os.replace`` is atomic on POSIX and Windows), so a reader sees either the old
file or the complete new one.

Importing this module registers :class:`AtomicLocalBackend` as mmengine's
``'local'`` backend (the one used for paths without a ``scheme://`` prefix).
"""

import os
import os.path as osp
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend


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
    """Write through ``write(file)`` into a temporary file, then rename it to ``path``."""
    path = osp.abspath(path)
    os.makedirs(osp.dirname(path), exist_ok=True)
    temp = _temp_path_for(path)
    try:
        # 'xb' rather than mkstemp: the file gets the usual umask-based mode.
        with open(temp, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        if osp.lexists(temp):
            os.remove(temp)
        raise
    _fsync_directory(osp.dirname(path))


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
    except BaseException:
        os.remove(temp)
        raise
    _fsync_directory(osp.dirname(target))


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(filepath, obj.encode(encoding))


register_backend("local", AtomicLocalBackend, force=True, prefixes="")
