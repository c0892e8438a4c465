"""The ``mediapipe`` runtime: a MediaPipe-ready ``.tflite`` run through MediaPipe Tasks.

MediaPipe Tasks (``ImageClassifier``, ``ObjectDetector``, ``ImageSegmenter``: the API
phone apps call) return finished results, not the graph's tensors, so this runtime is
registered ``finished=True`` (:func:`~mtvision.export.runtimes.register_runtime`): its
session returns the ONNX graph's fields for the file's one head and
:class:`~mtvision.export.DeployedModel` does not finish them again:

- classification: ``scores``, ``labels`` (N, k) (MediaPipe's top ``topk`` categories);
- detection: ``boxes`` (N, D, 4) float32 xyxy input pixels, ``scores`` (N, D), ``labels``
  (N, D) int64 (-1 padding), ``num_detections`` (N,), with D = ``test_cfg["max_detections"]``
  and MediaPipe's ``score_threshold`` = ``test_cfg["score_threshold"]``. MediaPipe decodes
  with the file's fixed anchors and suppresses (one class per anchor, class-agnostic NMS
  at IoU 0.3: :mod:`~mtvision.export.mediapipe_metadata` lists how that differs from
  mtvision's); its whole-pixel boxes are turned back into the nearest xyxy boxes and
  clipped to the image by :func:`pixel_box_to_xyxy`;
- segmentation: ``mask`` (N, H, W) uint8 (MediaPipe's category mask).

The file needs MediaPipe metadata (:func:`~mtvision.export.mediapipe_metadata.add_mediapipe_metadata`)
and mtvision's ``"mtvision"`` entry.

A MediaPipe Task is closed by :func:`close_with`, never by the garbage collector: its
``close()`` (also its ``__del__``) hands the C call to a one-thread executor and waits
for it, and when the Task sits in a reference cycle (an mmengine ``Runner`` holding the
model is one) the collector first clears the executor's weak reference, which tells its
only worker thread to exit, and then runs ``__del__``, whose call no thread will ever
run: the process hangs (``tools/eval.py --backend mediapipe`` hung so in the next
runner's ``gc.collect()``, mmengine's ``BaseDataset._serialize_data``).
"""

from __future__ import annotations

import weakref

import numpy as np

from mtvision.errors import ExportError
from mtvision.export.litert_metadata import read_tflite_metadata
from mtvision.export.mediapipe_metadata import single_head


def pixel_box_to_xyxy(
    origin_x: int, origin_y: int, box_width: int, box_height: int, image_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """MediaPipe's whole-pixel box -> the xyxy box (input pixels) nearest to the one it
    was truncated from, clipped to the image as mtvision's boxes are.

    MediaPipe stores ``origin = int(relative_min * size)`` clamped to [0, size] and
    ``extent = int(relative_extent * size)``: the true origin lies in
    [origin, origin + 1) and the far edge in [origin + extent, origin + extent + 2), so
    the centres of those intervals are returned (errors < 0.5 px and < 1 px). An origin
    of 0 may be a clamped negative one: it stays 0 (mtvision clips it to 0 too), but then
    the far edge is unknown (MediaPipe keeps the full extent) and may be too far out.
    """
    height, width = image_size
    x1 = origin_x + 0.5 if origin_x > 0 else 0.0
    y1 = origin_y + 0.5 if origin_y > 0 else 0.0
    x2 = min(origin_x + box_width + 1.0, float(width))
    y2 = min(origin_y + box_height + 1.0, float(height))
    return x1, y1, x2, y2


def close_with(owner, task) -> weakref.finalize:
    """Close the MediaPipe ``task`` when ``owner`` is collected, or at interpreter exit.

    The finalizer's registry holds ``task`` (and with it its executor), so a cycle that
    holds ``owner`` never makes the task garbage together with its executor: the
    collector calls ``task.close()`` while the executor's worker thread still runs, and
    the task's own ``__del__`` later finds it closed. At exit MediaPipe's own ``atexit``
    flag makes the close a no-op where it has run first.
    """
    return weakref.finalize(owner, task.close)


def open_mediapipe(path: str, threads=None):
    """``(run, output names)`` for a MediaPipe-ready ``.tflite`` (``threads`` is MediaPipe's
    choice: its Python API has no thread option). The Task closes when ``run`` is
    collected; ``run.close()`` closes it now (:func:`close_with`).

    Raises:
        ExportError: mediapipe missing (install hint), a multi-task file, or a file
            MediaPipe refuses (its message); names the file.
    """
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError:
        raise ExportError(
            f"{path}: the mediapipe runtime is not installed (pip install -e '.[mediapipe]')"
        ) from None
    metadata = read_tflite_metadata(path)
    try:
        name, info = single_head(metadata)
    except ExportError as error:
        raise ExportError(f"{path}: {error}") from None
    task = info["task"]
    base = BaseOptions(model_asset_path=path)
    classes = info.get("classes") or [str(i) for i in range(int(info["num_classes"]))]
    index_of = {label: i for i, label in enumerate(classes)}
    try:
        if task == "classification":
            topk = int(info["topk"])
            runner = vision.ImageClassifier.create_from_options(
                vision.ImageClassifierOptions(base_options=base, max_results=topk)
            )
            names = ["scores", "labels"]
        elif task == "detection":
            cfg = info["test_cfg"]
            max_detections = int(cfg["max_detections"])
            runner = vision.ObjectDetector.create_from_options(
                vision.ObjectDetectorOptions(
                    base_options=base,
                    max_results=max_detections,
                    score_threshold=float(cfg["score_threshold"]),
                )
            )
            names = ["boxes", "scores", "labels", "num_detections"]
        elif task == "segmentation":
            runner = vision.ImageSegmenter.create_from_options(
                vision.ImageSegmenterOptions(
                    base_options=base, output_category_mask=True, output_confidence_masks=False
                )
            )
            names = ["mask"]
        else:
            raise ExportError(f"{path}: MediaPipe Tasks have no task for {task!r}")
    except (RuntimeError, ValueError) as error:
        raise ExportError(f"{path}: MediaPipe cannot load it ({error})") from None

    def one(image: np.ndarray) -> dict[str, np.ndarray]:
        picture = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        height, width = image.shape[:2]
        if task == "classification":
            categories = runner.classify(picture).classifications[0].categories
            return {
                "scores": np.array([c.score for c in categories], np.float32),
                "labels": np.array([c.index for c in categories], np.int64),
            }
        if task == "detection":
            found = runner.detect(picture).detections
            boxes = np.zeros((max_detections, 4), np.float32)
            scores = np.zeros(max_detections, np.float32)
            labels = np.full(max_detections, -1, np.int64)
            for i, detection in enumerate(found[:max_detections]):
                box, category = detection.bounding_box, detection.categories[0]
                boxes[i] = pixel_box_to_xyxy(
                    box.origin_x, box.origin_y, box.width, box.height, (height, width)
                )
                scores[i] = category.score
                labels[i] = (
                    category.index
                    if category.index is not None
                    else index_of[category.category_name]
                )
            return {
                "boxes": boxes,
                "scores": scores,
                "labels": labels,
                "num_detections": np.array(min(len(found), max_detections), np.int64),
            }
        mask = runner.segment(picture).category_mask.numpy_view()
        return {"mask": np.asarray(mask, np.uint8).reshape(height, width).copy()}

    def run(images: np.ndarray) -> list[np.ndarray]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ExportError(f"{path}: MediaPipe takes (N, H, W, 3) images, got {images.shape}")
        results = [one(image) for image in images]
        return [np.stack([r[field] for r in results]) for field in names]

    run.close = close_with(run, runner)  # run.close(): close the Task now
    return run, names
