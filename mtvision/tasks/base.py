"""What a kind of head (a task) means to everyone who is not the head itself.

A head declares its kind as an object: ``task = DETECTION`` (a :class:`Task`
instance, :mod:`mtvision.tasks`). A head's *name* in a model (the key of
``MultiTaskModel.heads``, e.g. ``"detection"`` or ``"det_people"``) says nothing
about its task, so every consumer asks the head (or a deployed file's metadata,
:func:`task_named`) and leaves the work to the adapter:

- original-pixel predictions -> a JSON-ready result dict (:meth:`Task.result`) and the
  files a result needs (:meth:`Task.result_files`, e.g. a mask PNG);
- the fields a picture draws (:meth:`Task.draw`, :meth:`Task.draw_result`);
- the deployed graph: extra arguments of ``head.deploy``, metadata, outputs whose
  axes follow the input size, and the outputs read back from a deployed file into
  the prediction dicts the torch model gives (:meth:`Task.from_deployed`);
- the agreement of two runs' deployed outputs (:meth:`Task.agreement`), and for one
  image a prediction as deployed outputs (:meth:`Task.to_deployed`), a few words on
  them (:meth:`Task.summary`) and a line comparing two runs (:meth:`Task.comparison`).

:class:`HeadInfo` carries what the consumers know about one head of a model or a
deployed file: its name, task, class names and (segmentation) palette.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from mtvision.utils.metainfo import task_metainfo

__all__ = [
    "HeadInfo",
    "Task",
    "heads_of_task",
    "predicted_heads",
    "register_task",
    "registered_tasks",
    "task_named",
    "task_of",
]

_TASKS: dict[str, Task] = {}


class Task:
    """The adapter of one kind of head (base class; one instance per kind).

    Attributes:
        name: the kind's name, recorded as ``"task"`` in deployed metadata.
        fields: the prediction fields its heads' ``predict`` returns; the first one
            marks the head's presence in a merged ``MultiTaskModel.predict`` dict.
        draw_order: layer of its drawing in a picture of several heads (lower first).
        fixed_input_size: whether its deployed graph needs a fixed input size.
        in_image_pixels: whether its predictions are drawn in the pixels of the original
            image (boxes, masks) rather than beside it (a caption).
        int8_min_agreement: the least :meth:`agreement` an int8 export must keep with the
            float torch model by default (``tools/export.py --int8``).
    """

    name: str = ""
    fields: tuple[str, ...] = ()
    draw_order: int = 0
    fixed_input_size: bool = True
    in_image_pixels: bool = True
    int8_min_agreement: float = 0.9

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def present_in(self, prediction: Mapping) -> bool:
        """Whether a (merged) prediction dict holds this task's fields."""
        return self.fields[0] in prediction

    def palette(self, metainfo: Mapping) -> np.ndarray | None:
        """(N, 3) uint8 RGB colours of the labels when pictures colour them (None here)."""
        return None

    # ------------------------------------------------------------ deployment

    def deploy_options(
        self, topk: int, seg_logits: bool, phone: bool = False, class_map: bool = False
    ) -> dict:
        """Keyword arguments of the head's ``deploy(outputs, input_size, ...)``.

        ``phone``: the graph of the phone runtimes (LiteRT, ExecuTorch), which have no NMS
        op and whose task libraries (MediaPipe Tasks) do the last step themselves: class
        probabilities, raw SSD outputs, per-pixel class scores (``class_map``: the class
        map instead, argmax inside). :meth:`finish_phone_outputs` does that last step in
        Python, so every runtime's outputs end as the ONNX graph's."""
        return {}

    def deploy_metadata(
        self, head, topk: int, phone: bool = False, input_size: tuple[int, int] | None = None
    ) -> dict:
        """Entries of the head's deployed metadata beyond task, classes and outputs (for a
        ``phone`` graph what finishing its outputs needs, e.g. the anchors)."""
        return {}

    def finish_phone_outputs(
        self, outputs: Mapping[str, Tensor], info: Mapping, input_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """A phone graph's outputs (``deploy_options(phone=True)``) -> the ONNX graph's
        fields, computed as the torch head does (``info``: the head's metadata entry;
        ``input_size``: (H, W) the file takes)."""
        raise NotImplementedError

    def spatial_axes(self, field: str) -> tuple[int, int] | None:
        """The (height, width) axes of a deployed output that follow the input size."""
        return None

    def from_deployed(
        self, outputs: Mapping[str, Tensor], samples: Sequence[dict], info: Mapping
    ) -> list[dict]:
        """One prediction dict per image (the head's ``predict`` fields, original pixels)
        from a deployed graph's outputs ``{field: (N, ...)}``; ``info`` is the head's
        metadata entry."""
        raise NotImplementedError

    # ------------------------------------------------------------- agreement

    def agreement(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> float:
        """How closely two runs' deployed outputs agree, in [0, 1]."""
        raise NotImplementedError

    def max_score_difference(
        self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]
    ) -> float | None:
        """Largest score difference worth printing beside the agreement (None: none)."""
        return None

    # ------------------------------------------------------------- one image

    def to_deployed(self, prediction: Mapping, topk: int = 5) -> dict[str, Tensor]:
        """One image's prediction (the head's ``predict`` fields, in input pixels) as the
        deployed graph's outputs for it, ``{field: (1, ...)}`` (what :meth:`agreement`,
        :meth:`summary` and :meth:`comparison` take); ``topk`` as ``deploy_options``."""
        raise NotImplementedError

    def summary(self, outputs: Mapping[str, Tensor]) -> str:
        """A few words on one image's deployed outputs (``{field: (1, ...)}``); here the
        fields and their per-image shapes."""
        return ", ".join(
            f"{field} {'x'.join(str(s) for s in value.shape[1:])}"
            for field, value in outputs.items()
        )

    def comparison(self, expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> str:
        """One line comparing two runs' deployed outputs of one image; here the
        :meth:`agreement` and the :meth:`max_score_difference` when there is one."""
        line = f"agreement {self.agreement(expected, actual):.4g}"
        difference = self.max_score_difference(expected, actual)
        return line if difference is None else f"{line}, max |score diff| {difference:.2g}"

    # ---------------------------------------------------------------- results

    def result(
        self, prediction: Mapping, head: HeadInfo, topk: int = 5, score_threshold: float = 0.0
    ) -> dict:
        """The head's fields of a prediction dict as a JSON-ready result dict."""
        raise NotImplementedError

    def result_files(self, result: Mapping, head: HeadInfo) -> tuple[dict, dict[str, bytes]]:
        """``(JSON fields, {field: file bytes})``: what of a result goes into files of their
        own (the JSON then names the file in that field)."""
        return dict(result), {}

    # --------------------------------------------------------------- pictures

    def prepare_picture(self, prediction: Mapping, image_shape: tuple[int, ...], source: str):
        """The prediction checked against the (H, W, ...) image it is drawn on."""
        return prediction

    def picture_files(self, prediction: Mapping, head: HeadInfo) -> dict[str, bytes]:
        """Files written beside a picture of the prediction (``{field: bytes}``)."""
        return {}

    def scaled(self, prediction: Mapping, scale_x: float, scale_y: float, size) -> dict:
        """The prediction for the image resized to ``size`` (W, H) by (scale_x, scale_y)."""
        return dict(prediction)

    def draw(self, picture: np.ndarray, prediction: Mapping, head: HeadInfo, options):
        """``picture`` with the prediction drawn (:class:`~mtvision.visualization.draw.DrawOptions`)."""
        raise NotImplementedError

    def draw_result(
        self, picture: np.ndarray, result: Mapping, head: HeadInfo, options, scale: float = 1.0
    ):
        """``picture`` with a result dict drawn; ``scale``: picture pixels per result pixel."""
        raise NotImplementedError

    def draw_tile(self, image: np.ndarray, prediction: Mapping, head: HeadInfo, size: int):
        """A ``size`` x ``size`` tile of a prediction that is not in image pixels
        (``in_image_pixels`` False), drawn on the network input ``image``."""
        raise NotImplementedError


def register_task(task: Task) -> Task:
    """Make ``task`` known by its name (deployed metadata records the name)."""
    if task.name in _TASKS:
        raise ValueError(f"a task named {task.name!r} is registered already")
    _TASKS[task.name] = task
    return task


def registered_tasks() -> tuple[Task, ...]:
    """Every registered task, in registration order."""
    return tuple(_TASKS.values())


def predicted_heads(
    prediction: Mapping, tasks: Mapping[str, Task] | None = None
) -> dict[str, Task]:
    """``{head name: task}`` of the heads whose fields a merged prediction dict holds.

    ``tasks``: the heads that ran (``{name: task}``, e.g. a model's active heads);
    ``None`` when unknown: every registered task whose fields are present, each
    standing for a head named after its task (the named models' default names).
    """
    if tasks is None:
        tasks = {task.name: task for task in registered_tasks()}
    return {name: task for name, task in tasks.items() if task.present_in(prediction)}


def heads_of_task(head_tasks: Mapping[str, Task], task: Task) -> list[str]:
    """Names of the heads whose task is ``task``, in order; ``head_tasks``: ``{head name:
    task}`` (``MultiTaskModel.head_tasks``, ``OnnxRuntimeModel.head_tasks``). A head is
    found by its task, whatever its name."""
    return [name for name, head_task in head_tasks.items() if head_task is task]


def task_named(name: str) -> Task:
    """The task a deployed file's metadata names.

    Raises:
        ValueError: no task of that name (the known ones listed).
    """
    if name not in _TASKS:
        raise ValueError(f"no task adapter named {name!r}; known: {sorted(_TASKS)}")
    return _TASKS[name]


def task_of(head, name: str = "") -> Task:
    """The :class:`Task` a head declares (its ``task`` attribute).

    Raises:
        ValueError: the head declares none (the message names the head).
    """
    task = getattr(head, "task", None)
    if not isinstance(task, Task):
        raise ValueError(
            f"head {name!r} ({type(head).__name__}) declares no task adapter (task = "
            f"{task!r}); set a class attribute such as task = DETECTION (mtvision.tasks)"
        )
    return task


@dataclass(frozen=True)
class HeadInfo:
    """What consumers know about one head: its name, task, class names and label colours.

    ``max_topk``: classes a deployed classification graph returns (None: all).
    """

    name: str
    task: Task
    classes: tuple[str, ...] | None = None
    palette: np.ndarray | None = None
    max_topk: int | None = None

    def label_name(self, label: int) -> str:
        """The class name of ``label``, or the number as text without one."""
        if self.classes is not None and 0 <= label < len(self.classes):
            return str(self.classes[label])
        return str(label)

    @classmethod
    def from_metainfo(
        cls,
        name: str,
        task: Task,
        metainfo: Mapping | None,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | np.ndarray | None = None,
        max_topk: int | None = None,
    ) -> HeadInfo:
        """The head ``name``'s entry of a dataset's (or checkpoint's) metainfo, looked up by
        head name (:func:`~mtvision.utils.metainfo.task_metainfo`); ``classes`` and
        ``palette`` given here win over it. A multi-task metainfo without the head gives
        label numbers."""
        try:
            meta = task_metainfo(metainfo, name)
        except KeyError:
            meta = {}
        classes = classes or meta.get("classes")
        if palette is not None:
            palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        else:
            palette = task.palette(meta)
        classes = None if classes is None else tuple(str(c) for c in classes)
        return cls(name, task, classes, palette, max_topk)
