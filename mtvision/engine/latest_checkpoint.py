"""The newest checkpoint of a work dir that can actually be read, for auto-resume.

mtvision writes checkpoints atomically (temporary file, fsync, rename), so on
a local disk ``last.pth`` is never half-written. Not every filesystem renames
atomically (some network and FUSE mounts), and a node can die while it
writes: ``last.pth`` or the newest ``iter_*.pth`` may then be truncated.
Auto-resume therefore tries the candidates newest first and takes the first
one that loads as a training checkpoint; the ones it skips are returned with
the reason, for the log.
"""

from __future__ import annotations

import os
import os.path as osp
import re
from typing import NamedTuple

from mtvision.engine.checkpoint import load_checkpoint_file
from mtvision.errors import CheckpointError

LAST_CHECKPOINT_NAME = "last.pth"

#: Names mmengine's ``CheckpointHook`` gives to periodic checkpoints.
PERIODIC_CHECKPOINT = re.compile(r"^(epoch|iter)_(\d+)\.pth$")


class SkippedCheckpoint(NamedTuple):
    path: str
    reason: str


def _pointer_target(work_dir: str) -> str | None:
    """The file named in mmengine's ``last_checkpoint`` pointer, if it names one."""
    try:
        with open(osp.join(work_dir, "last_checkpoint"), encoding="utf-8") as file:
            target = file.read().strip()
    except OSError:
        return None
    return target or None


def checkpoint_candidates(work_dir: str) -> list[str]:
    """Resumable checkpoints of ``work_dir``, newest first.

    ``last.pth`` first, then the periodic checkpoints (``epoch_N.pth``,
    ``iter_N.pth``) of the work dir and of the directory mmengine's
    ``last_checkpoint`` pointer names (a ``CheckpointHook`` with ``out_dir``),
    by modification time, the larger ``N`` first on ties.
    """
    directories = [work_dir]
    target = _pointer_target(work_dir)
    if target and osp.dirname(target) and osp.dirname(target) != work_dir:
        directories.append(osp.dirname(target))
    periodic = []
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            match = PERIODIC_CHECKPOINT.match(name)
            path = osp.join(directory, name)
            if match and osp.isfile(path):
                periodic.append((os.stat(path).st_mtime_ns, int(match.group(2)), path))
    ordered = [path for _, _, path in sorted(periodic, reverse=True)]
    last = osp.join(work_dir, LAST_CHECKPOINT_NAME)
    return ([last] if osp.isfile(last) else []) + ordered


def _unusable_because(path: str) -> str | None:
    """Why ``path`` cannot be resumed from, or ``None`` if it can."""
    try:
        checkpoint = load_checkpoint_file(path, map_location="cpu")
    except CheckpointError as error:
        # The message starts with the file name; the log line names it already.
        return str(error).removeprefix(f"{path}: ")
    if not isinstance(checkpoint, dict):
        return f"holds a {type(checkpoint).__name__}, not a training checkpoint"
    missing = [key for key in ("meta", "state_dict") if key not in checkpoint]
    if missing:
        return f"not a training checkpoint (no {' or '.join(missing)} entry)"
    return None


def find_resumable_checkpoint(work_dir: str) -> tuple[str | None, list[SkippedCheckpoint]]:
    """The newest checkpoint of ``work_dir`` that loads, and the newer ones that did not.

    Returns ``(None, skipped)`` when no candidate loads (``skipped`` empty:
    the work dir has no checkpoint at all).
    """
    skipped = []
    for path in checkpoint_candidates(work_dir):
        reason = _unusable_because(path)
        if reason is None:
            return path, skipped
        skipped.append(SkippedCheckpoint(path, reason))
    return None, skipped
