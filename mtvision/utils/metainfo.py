"""The metainfo of a dataset that feeds several heads: one entry per task.

A single-task dataset's ``metainfo`` describes its one label space
(``classes``, and e.g. ``category_ids`` or ``palette``). A dataset whose
samples feed several heads (:class:`~mtvision.data.JoinedDataset`,
:class:`~mtvision.data.TaskConcatDataset`) has no single label space: its
``metainfo`` is ``{"tasks": {head name: that head's metainfo}}``, keyed by the
model's head names (the named models name their heads after their tasks; a head
may be named anything). Whoever needs one head's class list (a metric, a picture,
a result, an export) asks :func:`task_metainfo` with the head's name, so it never
receives another head's classes.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["TASKS_KEY", "task_metainfo"]

#: The ``metainfo`` key holding the per-task metainfo of a multi-task dataset.
TASKS_KEY = "tasks"


def task_metainfo(metainfo: Mapping | None, task: str) -> dict:
    """The metainfo that describes ``task``'s labels in a dataset's ``metainfo``.

    Args:
        metainfo: a dataset's ``metainfo`` (``None`` for a dataset without one).
        task: head / task name.

    Returns:
        ``metainfo["tasks"][task]`` for a multi-task dataset; for a
        single-task dataset its whole ``metainfo`` (it has one label space,
        the one of the task it is evaluated for); ``{}`` for ``None``.

    Raises:
        KeyError: a multi-task dataset without an entry for ``task`` (the
            message lists the tasks it has).
    """
    if metainfo is None:
        return {}
    if TASKS_KEY not in metainfo:
        return dict(metainfo)
    tasks = metainfo[TASKS_KEY]
    if task not in tasks:
        raise KeyError(
            f"the dataset has annotations for the tasks {sorted(tasks)}, not for {task!r}"
        )
    return dict(tasks[task])
