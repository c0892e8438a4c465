"""COCO box mAP: the 12 standard ``COCOeval`` statistics as an mmengine metric.

The numbers come from the reference implementations, never from our own
matching code: faster-coco-eval (``COCOeval_faster``, C++) when it is
installed, pycocotools otherwise, or whichever ``backend`` names. Both give the
same statistics (tests/test_coco_metric.py checks them against each other).

Box formats: predictions hold ``boxes`` (K, 4) xyxy in original-image pixels;
COCO files (annotations and results) hold ``bbox`` = [x, y, width, height] in
pixels. Contiguous labels 0..C-1 map to COCO category ids through
``dataset_meta["category_ids"]`` (label i <-> i-th id), or, without it, the
annotation file's category ids sorted ascending.

A statistic COCO leaves undefined (no ground truth in that area range, so no
precision or recall exists) is reported as -1, as ``COCOeval.summarize`` does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mtvision.errors import AnnotationError
from mtvision.registry import METRICS
from mtvision.utils.arrays import to_numpy
from mtvision.utils.atomic_files import atomic_write_bytes

__all__ = [
    "COCO_BBOX_STAT_NAMES",
    "BboxEvaluation",
    "CocoFormatError",
    "CocoMetric",
    "classwise_ap_table",
    "dump_coco_results",
    "evaluate_bbox",
    "load_coco_annotations",
    "load_coco_results",
    "resolve_backend",
    "to_coco_results",
]

#: Names of ``COCOeval.stats[0:12]`` for boxes, in that order (mmdet's names,
#: AR ones spelled with their detection limit and area range).
COCO_BBOX_STAT_NAMES = (
    "bbox_mAP",
    "bbox_mAP_50",
    "bbox_mAP_75",
    "bbox_mAP_s",
    "bbox_mAP_m",
    "bbox_mAP_l",
    "bbox_AR@1",
    "bbox_AR@10",
    "bbox_AR@100",
    "bbox_AR_s@100",
    "bbox_AR_m@100",
    "bbox_AR_l@100",
)

Backend = Literal["auto", "faster_coco_eval", "pycocotools"]
BACKENDS = ("faster_coco_eval", "pycocotools")


class CocoFormatError(AnnotationError):
    """A COCO annotation or results file, or a prediction, does not fit the COCO format.

    The message names the file (or the image id) and the problem.
    """


# ------------------------------------------------------------------ reading files


def _read_json(path: str | os.PathLike, what: str):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CocoFormatError(f"{path}: {what} is not valid JSON ({error})") from error


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bbox_problem(bbox) -> str | None:
    """Why ``bbox`` is not a COCO [x, y, w, h] box, or ``None`` when it is one."""
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        return f"bbox must be [x, y, width, height], got {bbox!r}"
    if not all(_is_number(v) for v in bbox):
        return f"bbox values must be finite numbers, got {bbox!r}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox width and height must be >= 0, got {bbox!r}"
    return None


def load_coco_annotations(ann_file: str | os.PathLike) -> dict:
    """Read and check a COCO instances file; returns its dict.

    Checked, so that mistakes surface here and not as a ``KeyError`` deep in
    COCOeval: the top level has ``images``, ``annotations`` and ``categories``
    lists; image, category and annotation ids are unique integers; every
    annotation names a known image and category and has a valid ``bbox``, a
    numeric ``area`` (COCOeval's small/medium/large split reads it) and an
    ``iscrowd`` of 0 or 1 when present.

    Raises:
        FileNotFoundError: no such file.
        CocoFormatError: anything else, naming the file (and annotation id).
    """
    ann_file = os.fspath(ann_file)
    data = _read_json(ann_file, "COCO annotation file")
    if not isinstance(data, dict):
        raise CocoFormatError(f"{ann_file}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"{ann_file}: needs a list '{key}' (COCO instances format)")

    def unique_ids(entries: list, what: str) -> set[int]:
        ids: set[int] = set()
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not _is_int(entry.get("id")):
                raise CocoFormatError(f"{ann_file}: {what} #{index} has no integer 'id'")
            if entry["id"] in ids:
                raise CocoFormatError(f"{ann_file}: {what} id {entry['id']} appears twice")
            ids.add(entry["id"])
        return ids

    image_ids = unique_ids(data["images"], "image")
    category_ids = unique_ids(data["categories"], "category")
    unique_ids(data["annotations"], "annotation")
    for ann in data["annotations"]:
        where = f"{ann_file}: annotation id {ann['id']}"
        if ann.get("image_id") not in image_ids:
            raise CocoFormatError(f"{where}: image_id {ann.get('image_id')!r} is not an image")
        if ann.get("category_id") not in category_ids:
            raise CocoFormatError(
                f"{where}: category_id {ann.get('category_id')!r} is not a category"
            )
        problem = _bbox_problem(ann.get("bbox"))
        if problem is not None:
            raise CocoFormatError(f"{where}: {problem}")
        if not _is_number(ann.get("area")) or ann["area"] < 0:
            raise CocoFormatError(f"{where}: needs a numeric 'area' >= 0, got {ann.get('area')!r}")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise CocoFormatError(f"{where}: iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
    return data


def load_coco_results(results_file: str | os.PathLike) -> list[dict]:
    """Read and check a COCO box results file: a list of
    ``{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}``.

    Whether the ids exist in an annotation file is checked by :func:`evaluate_bbox`.
    """
    results_file = os.fspath(results_file)
    results = _read_json(results_file, "COCO results file")
    if not isinstance(results, list):
        raise CocoFormatError(
            f"{results_file}: expected a JSON list of detections, got {type(results).__name__}"
        )
    for index, result in enumerate(results):
        where = f"{results_file}: result #{index}"
        if not isinstance(result, dict):
            raise CocoFormatError(f"{where}: expected an object, got {type(result).__name__}")
        for key in ("image_id", "category_id"):
            if not _is_int(result.get(key)):
                raise CocoFormatError(f"{where}: needs an integer '{key}'")
        problem = _bbox_problem(result.get("bbox"))
        if problem is not None:
            raise CocoFormatError(f"{where}: {problem}")
        if not _is_number(result.get("score")):
            raise CocoFormatError(f"{where}: needs a finite numeric 'score'")
    return results


# ------------------------------------------------------------------ writing results


def to_coco_results(
    img_id: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    category_ids: Sequence[int],
) -> list[dict]:
    """One image's detections as COCO result entries.

    Args:
        img_id: the COCO image id.
        boxes: (K, 4) xyxy pixels.
        scores: (K,) confidences.
        labels: (K,) contiguous labels; label i becomes ``category_ids[i]``.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``
        with plain Python numbers (JSON-ready).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return [
        {
            "image_id": int(img_id),
            "category_id": int(category_ids[int(label)]),
            "bbox": [float(v) for v in box],
            "score": float(score),
        }
        for box, score, label in zip(xywh, np.asarray(scores), np.asarray(labels), strict=True)
    ]


def dump_coco_results(results: Sequence[dict], path: str | os.PathLike) -> None:
    """Write COCO result entries as a JSON list (atomically: never a half-written file)."""
    atomic_write_bytes(path, json.dumps(list(results)).encode("utf-8"))


# ------------------------------------------------------------------ evaluation


class BboxEvaluation(NamedTuple):
    """What :func:`evaluate_bbox` computed.

    ``stats``: (12,) float64, ``COCOeval.stats`` in :data:`COCO_BBOX_STAT_NAMES`
    order. ``precision``: COCOeval's (T=10 IoUs, R=101 recalls, K categories,
    A=4 areas, M=3 max-dets) array, -1 where undefined. ``category_ids``: the
    K category ids of its third axis. ``summary``: COCOeval's summary lines.
    """

    stats: np.ndarray
    precision: np.ndarray
    category_ids: list[int]
    summary: str


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> faster_coco_eval when importable, else pycocotools; checks the name."""
    if backend == "auto":
        return "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") else "pycocotools"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if importlib.util.find_spec(backend) is None:
        raise ImportError(f"COCO evaluation backend {backend!r} is not installed")
    return backend


def _coco_from_dict(coco_class, dataset: dict):
    """A pycocotools/faster-coco-eval ``COCO`` indexing fresh copies of ``dataset``'s entries.

    COCOeval writes into the annotation dicts (``gt["ignore"]``); copies keep
    the caller's data as it was. Masks are left out: box evaluation never reads them.
    """
    coco = coco_class()
    coco.dataset = {
        "images": [dict(image) for image in dataset["images"]],
        "categories": [dict(category) for category in dataset["categories"]],
        "annotations": [
            {key: value for key, value in ann.items() if key != "segmentation"}
            for ann in dataset["annotations"]
        ],
    }
    coco.createIndex()
    return coco


def _check_results_fit(
    annotations: dict, results: Sequence[dict], source: str, ann_source: str
) -> None:
    image_ids = {image["id"] for image in annotations["images"]}
    category_ids = {category["id"] for category in annotations["categories"]}
    for result in results:
        if result["image_id"] not in image_ids:
            raise CocoFormatError(
                f"{source}: image_id {result['image_id']} is not an image of {ann_source}"
            )
        if result["category_id"] not in category_ids:
            raise CocoFormatError(
                f"{source}: category_id {result['category_id']} is not a category of {ann_source}"
            )


def evaluate_bbox(
    annotations: dict,
    results: Sequence[dict],
    img_ids: Iterable[int] | None = None,
    backend: Backend = "auto",
    results_source: str = "predictions",
    ann_source: str = "the annotations",
) -> BboxEvaluation:
    """Run COCOeval (iouType 'bbox') on COCO result entries.

    Args:
        annotations: a COCO instances dict (see :func:`load_coco_annotations`).
        results: COCO result entries (see :func:`to_coco_results`); may be empty.
        img_ids: the images to evaluate (``COCOeval.params.imgIds``), e.g. the
            images a model was run on; ``None`` evaluates every image of
            ``annotations``. Ground truth of other images is not counted.
        backend: ``"auto"``, ``"faster_coco_eval"`` or ``"pycocotools"``.
        results_source, ann_source: name the results and the annotations in
            error messages (e.g. their file names).

    Raises:
        CocoFormatError: a result or ``img_ids`` names an image or category the
            annotations do not have.
    """
    backend = resolve_backend(backend)
    _check_results_fit(annotations, results, results_source, ann_source)
    known_images = {image["id"] for image in annotations["images"]}
    if img_ids is None:
        img_ids = sorted(known_images)
    else:
        img_ids = sorted(set(img_ids))
        unknown = [i for i in img_ids if i not in known_images]
        if unknown:
            raise CocoFormatError(
                f"{results_source}: image id(s) {unknown[:10]} are not images of {ann_source}"
            )
    # loadRes edits its entries in place (adds id, area, segmentation).
    results = [dict(result, bbox=list(result["bbox"])) for result in results]

    summary = io.StringIO()
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        coco_gt = _coco_from_dict(COCO, annotations)
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval_faster(
            coco_gt,
            coco_dt,
            iouType="bbox",
            print_function=lambda line: summary.write(f"{line}\n"),
        )
        _run_cocoeval(coco_eval, img_ids)
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        # pycocotools prints its progress and summary to stdout.
        with contextlib.redirect_stdout(summary):
            coco_gt = _coco_from_dict(COCO, annotations)
            if results:
                coco_dt = coco_gt.loadRes(results)
            else:
                # loadRes indexes results[0]; an empty result set is still a valid evaluation.
                coco_dt = _coco_from_dict(
                    COCO,
                    {
                        "images": annotations["images"],
                        "categories": annotations["categories"],
                        "annotations": [],
                    },
                )
            coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
            _run_cocoeval(coco_eval, img_ids)
    return BboxEvaluation(
        stats=np.asarray(coco_eval.stats[:12], dtype=np.float64),
        precision=np.asarray(coco_eval.eval["precision"]),
        category_ids=[int(c) for c in coco_eval.params.catIds],
        # Only the statistics lines; the backends' progress messages differ.
        summary="\n".join(
            line for line in summary.getvalue().splitlines() if line.lstrip().startswith("Average")
        ),
    )


def _run_cocoeval(coco_eval, img_ids: list[int]) -> None:
    coco_eval.params.imgIds = img_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()


def classwise_ap_table(evaluation: BboxEvaluation, category_names: dict[int, str]) -> str:
    """Per-category AP (IoU 0.50:0.95) and AP50, all areas, 100 detections, as text.

    A category without ground truth in the evaluated images has no AP ("-").
    """
    rows = [("category", "AP", "AP50")]
    for k, category_id in enumerate(evaluation.category_ids):
        values = []
        for precision in (
            evaluation.precision[:, :, k, 0, -1],
            evaluation.precision[0, :, k, 0, -1],
        ):
            defined = precision[precision > -1]
            values.append(f"{defined.mean():.3f}" if defined.size else "-")
        rows.append((category_names.get(category_id, str(category_id)), *values))
    width = max(len(row[0]) for row in rows)
    return "\n".join(f"{name:<{width}}  {ap:>6}  {ap50:>6}" for name, ap, ap50 in rows)


# ------------------------------------------------------------------ the metric


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO box mAP/AR of detection predictions, computed by COCOeval.

    Reads from each prediction: ``boxes`` (K, 4) float xyxy in original-image
    pixels, ``scores`` (K,), ``labels`` (K,) int contiguous 0..C-1, and
    ``meta["img_id"]`` (the COCO image id). An image with no detections still
    counts: its ground truth is missed. Only the images that were predicted
    are evaluated (``COCOeval.params.imgIds``), so a subset of the annotation
    file, or one process's shard, gives the right numbers for those images.

    Args:
        ann_file: COCO instances JSON with the ground truth; read and checked
            when the metric is built (see :func:`load_coco_annotations`).
        backend: ``"auto"`` (faster-coco-eval when installed, else
            pycocotools), ``"faster_coco_eval"`` or ``"pycocotools"``.
        classwise: log a per-category AP / AP50 table.
        results_file: when set, also write the predictions as a COCO results
            JSON there (what tools/eval.py ``--out FILE.json`` does).
        prefix: key prefix, default ``"coco"``.

    Returns (``compute_metrics``): ``{name: float}`` for the 12 names of
    :data:`COCO_BBOX_STAT_NAMES` (``bbox_mAP`` ... ``bbox_AR_l@100``), as
    fractions in [0, 1], or -1 where COCO leaves a value undefined.
    """

    default_prefix = "coco"

    def __init__(
        self,
        ann_file: str,
        backend: Backend = "auto",
        classwise: bool = True,
        results_file: str | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = os.fspath(ann_file)
        self.backend = resolve_backend(backend)
        self.classwise = classwise
        self.results_file = results_file
        self.annotations = load_coco_annotations(self.ann_file)
        self.image_ids = {image["id"] for image in self.annotations["images"]}
        self.category_names = {
            c["id"]: str(c.get("name", c["id"])) for c in self.annotations["categories"]
        }

    @property
    def category_ids(self) -> list[int]:
        """COCO category id of each contiguous label."""
        if self.dataset_meta and "category_ids" in self.dataset_meta:
            return [int(c) for c in self.dataset_meta["category_ids"]]
        return sorted(self.category_names)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        num_labels = len(self.category_ids)
        for prediction in data_samples:
            meta = prediction.get("meta", {})
            if "img_id" not in meta:
                raise KeyError(
                    "CocoMetric needs meta['img_id'] (the COCO image id) in every prediction; "
                    f"got meta keys {sorted(meta)}"
                )
            img_id = int(meta["img_id"])
            if img_id not in self.image_ids:
                raise CocoFormatError(
                    f"prediction for image id {img_id}: not an image of {self.ann_file}"
                )
            boxes = to_numpy(prediction["boxes"]).astype(np.float64).reshape(-1, 4)
            scores = to_numpy(prediction["scores"]).astype(np.float64).reshape(-1)
            labels = to_numpy(prediction["labels"]).astype(np.int64).reshape(-1)
            if not len(boxes) == len(scores) == len(labels):
                raise CocoFormatError(
                    f"prediction for image id {img_id}: {len(boxes)} boxes, {len(scores)} scores "
                    f"and {len(labels)} labels"
                )
            if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
                raise CocoFormatError(
                    f"prediction for image id {img_id}: boxes or scores are not finite (NaN/inf)"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
                raise CocoFormatError(
                    f"prediction for image id {img_id}: labels must be in 0..{num_labels - 1} "
                    f"({num_labels} categories), got {labels.min()}..{labels.max()}"
                )
            self.results.append(
                {"img_id": img_id, "boxes": boxes, "scores": scores, "labels": labels}
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        seen: set[int] = set()
        for result in results:
            # Two entries for one image would double its detections.
            if result["img_id"] in seen:
                raise CocoFormatError(
                    f"image id {result['img_id']} was predicted twice; each image of the test "
                    "set must be evaluated once"
                )
            seen.add(result["img_id"])
        category_ids = self.category_ids
        unknown = sorted(set(category_ids) - set(self.category_names))
        if unknown:
            raise CocoFormatError(
                f"dataset_meta['category_ids'] has ids {unknown} that are not categories of "
                f"{self.ann_file}"
            )
        coco_results = [
            entry
            for r in results
            for entry in to_coco_results(
                r["img_id"], r["boxes"], r["scores"], r["labels"], category_ids
            )
        ]
        if self.results_file is not None:
            dump_coco_results(coco_results, self.results_file)
            print_log(f"COCO results written to {self.results_file}", logger="current")
        return self.evaluate_results(coco_results, img_ids=seen)

    def evaluate_results(
        self,
        coco_results: Sequence[dict],
        img_ids: Iterable[int] | None = None,
        results_source: str = "predictions",
    ) -> dict[str, float]:
        """The 12 statistics of COCO result entries against :attr:`ann_file` (no prefix).

        ``img_ids=None`` evaluates every image of the annotation file, as the
        COCO evaluation server does with a results file.
        """
        evaluation = evaluate_bbox(
            self.annotations,
            coco_results,
            img_ids,
            self.backend,
            results_source=results_source,
            ann_source=self.ann_file,
        )
        print_log(f"COCO bbox evaluation ({self.backend}):\n{evaluation.summary}", logger="current")
        if self.classwise:
            table = classwise_ap_table(evaluation, self.category_names)
            print_log(f"Per-category bbox AP:\n{table}", logger="current")
        return {
            name: float(value)
            for name, value in zip(COCO_BBOX_STAT_NAMES, evaluation.stats, strict=True)
        }
