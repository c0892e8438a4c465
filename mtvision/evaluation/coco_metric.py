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

Ground truth: annotation files are read and normalised by
:func:`mtvision.data.coco_annotations.load_coco_instances`, the reader
:class:`~mtvision.data.coco_detection.CocoDetection` uses too, and
:func:`evaluate_bbox` normalises any dict it is given the same way: no
backend sees a user's raw json (missing ``iscrowd`` is 0, missing ``area``
computed, extra keys such as ``ignore`` dropped).

Ids: image, category and annotation ids are any JSON integers (also beyond
2**53, where a float64 no longer tells neighbours apart). Before evaluation they
are renumbered 1..N in ascending order, so the backends never hold a user's id
(and see the same order, so the same ties); results files and per-category
tables carry the user's ids.

Classes: a dataset built with a class subset (``classes=(...)``) hands the
metric its ``dataset_meta["category_ids"]``; only those categories are
evaluated (``COCOeval.params.catIds``, as mmdet's ``CocoMetric`` does) and
listed in the per-category table.

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

from mtvision.data.coco_annotations import (
    load_coco_instances,
    normalize_coco_instances,
    read_json,
)
from mtvision.errors import AnnotationError
from mtvision.registry import METRICS
from mtvision.utils.arrays import to_numpy
from mtvision.utils.atomic_files import atomic_write_bytes

__all__ = [
    "COCO_BBOX_STAT_NAMES",
    "BboxEvaluation",
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


# ------------------------------------------------------------------ reading files


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
    """Read, check and normalise a COCO instances file (what the metric evaluates against).

    The same reader as the datasets':
    :func:`mtvision.data.coco_annotations.load_coco_instances`.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: anything else, naming the file (and annotation id).
    """
    return load_coco_instances(ann_file)


def load_coco_results(results_file: str | os.PathLike) -> list[dict]:
    """Read and check a COCO box results file: a list of
    ``{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}``.

    Whether the ids exist in an annotation file is checked by :func:`evaluate_bbox`.
    """
    results_file = os.fspath(results_file)
    results = read_json(results_file, "COCO results file")
    if not isinstance(results, list):
        raise AnnotationError(
            f"{results_file}: expected a JSON list of detections, got {type(results).__name__}"
        )
    for index, result in enumerate(results):
        where = f"{results_file}: result #{index}"
        if not isinstance(result, dict):
            raise AnnotationError(f"{where}: expected an object, got {type(result).__name__}")
        for key in ("image_id", "category_id"):
            if not _is_int(result.get(key)):
                raise AnnotationError(f"{where}: needs an integer '{key}'")
        problem = _bbox_problem(result.get("bbox"))
        if problem is not None:
            raise AnnotationError(f"{where}: {problem}")
        if not _is_number(result.get("score")):
            raise AnnotationError(f"{where}: needs a finite numeric 'score'")
    return results


# ------------------------------------------------------------------ writing results


def to_coco_results(
    img_id: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    category_ids: Sequence[int | None],
) -> list[dict]:
    """One image's detections as COCO result entries.

    Args:
        img_id: the COCO image id.
        boxes: (K, 4) xyxy pixels.
        scores: (K,) confidences.
        labels: (K,) contiguous labels; label i becomes ``category_ids[i]``
            (a label whose id is ``None``, a class the annotation file lacks,
            gives no entry).

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
        if category_ids[int(label)] is not None
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


class _DenseIds(NamedTuple):
    """A user's ids -> 1..N in ascending order (order kept, so COCOeval's ties fall alike)."""

    images: dict[int, int]
    categories: dict[int, int]

    @classmethod
    def of(cls, annotations: dict) -> _DenseIds:
        def dense(entries: list[dict]) -> dict[int, int]:
            return {user: k for k, user in enumerate(sorted(e["id"] for e in entries), start=1)}

        return cls(dense(annotations["images"]), dense(annotations["categories"]))


def _backend_dataset(annotations: dict, ids: _DenseIds) -> dict:
    """The normalised ground truth with dense ids: all a box evaluation reads, nothing else.

    Annotation ids become 1..M too: pycocotools marks a matched detection by the
    matched ground truth's id, and an id 0 would read as "not matched".
    """

    def image(entry: dict) -> dict:
        sized = {k: entry[k] for k in ("width", "height") if entry[k] is not None}
        return {"id": ids.images[entry["id"]], **sized}

    return {
        "images": [image(entry) for entry in annotations["images"]],
        "categories": [
            {"id": ids.categories[c["id"]], "name": str(c["name"] or c["id"])}
            for c in annotations["categories"]
        ],
        "annotations": [
            {
                "id": k,
                "image_id": ids.images[ann["image_id"]],
                "category_id": ids.categories[ann["category_id"]],
                "bbox": list(ann["bbox"]),
                "area": ann["area"],
                "iscrowd": ann["iscrowd"],
            }
            for k, ann in enumerate(annotations["annotations"], start=1)
        ],
    }


def _coco_from_dict(coco_class, dataset: dict):
    """A pycocotools/faster-coco-eval ``COCO`` indexing ``dataset`` (which it may modify)."""
    coco = coco_class()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _check_results_fit(
    ids: _DenseIds, results: Sequence[dict], source: str, ann_source: str
) -> None:
    for result in results:
        if result["image_id"] not in ids.images:
            raise AnnotationError(
                f"{source}: image_id {result['image_id']} is not an image of {ann_source}"
            )
        if result["category_id"] not in ids.categories:
            raise AnnotationError(
                f"{source}: category_id {result['category_id']} is not a category of {ann_source}"
            )


def _selected(
    wanted: Iterable[int] | None, known: dict[int, int], what: str, source: str, ann_source: str
) -> list[int]:
    """Dense ids of ``wanted`` user ids (all of ``known`` for ``None``), ascending."""
    if wanted is None:
        return sorted(known.values())
    wanted = sorted(set(wanted))
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise AnnotationError(f"{source}: {what} id(s) {unknown[:10]} are not in {ann_source}")
    return sorted(known[i] for i in wanted)


def evaluate_bbox(
    annotations: dict,
    results: Sequence[dict],
    img_ids: Iterable[int] | None = None,
    backend: Backend = "auto",
    results_source: str = "predictions",
    ann_source: str = "the annotations",
    cat_ids: Iterable[int] | None = None,
) -> BboxEvaluation:
    """Run COCOeval (iouType 'bbox') on COCO result entries.

    Args:
        annotations: a COCO instances dict; normalised here as
            :func:`~mtvision.data.coco_annotations.normalize_coco_instances`
            does (a dict from :func:`load_coco_annotations` already is).
        results: COCO result entries (see :func:`to_coco_results`); may be empty.
        img_ids: the images to evaluate (``COCOeval.params.imgIds``), e.g. the
            images a model was run on; ``None`` evaluates every image of
            ``annotations``. Ground truth of other images is not counted.
        backend: ``"auto"``, ``"faster_coco_eval"`` or ``"pycocotools"``.
        results_source, ann_source: name the results and the annotations in
            error messages (e.g. their file names).
        cat_ids: the categories to evaluate (``COCOeval.params.catIds``), e.g.
            a dataset's selected classes; ``None`` evaluates every category.

    Both backends get the same normalised ground truth and results, with ids
    renumbered 1..N (see the module docstring); the returned
    ``category_ids`` are the user's.

    Raises:
        AnnotationError: the annotations are malformed, or a result,
            ``img_ids`` or ``cat_ids`` names an image or category the
            annotations do not have.
    """
    backend = resolve_backend(backend)
    annotations = normalize_coco_instances(annotations, ann_source)
    ids = _DenseIds.of(annotations)
    _check_results_fit(ids, results, results_source, ann_source)
    img_ids = _selected(img_ids, ids.images, "image", results_source, ann_source)
    cat_ids = _selected(cat_ids, ids.categories, "category", "the selected classes", ann_source)
    user_category_of = {dense: user for user, dense in ids.categories.items()}
    # loadRes edits its entries in place (adds id, area, segmentation): fresh ones.
    results = [
        {
            "image_id": ids.images[result["image_id"]],
            "category_id": ids.categories[result["category_id"]],
            "bbox": [float(v) for v in result["bbox"]],
            "score": float(result["score"]),
        }
        for result in results
    ]

    summary = io.StringIO()
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        coco_gt = _coco_from_dict(COCO, _backend_dataset(annotations, ids))
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval_faster(
            coco_gt,
            coco_dt,
            iouType="bbox",
            print_function=lambda line: summary.write(f"{line}\n"),
        )
        _run_cocoeval(coco_eval, img_ids, cat_ids)
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        # pycocotools prints its progress and summary to stdout.
        with contextlib.redirect_stdout(summary):
            coco_gt = _coco_from_dict(COCO, _backend_dataset(annotations, ids))
            if results:
                coco_dt = coco_gt.loadRes(results)
            else:
                # loadRes indexes results[0]; an empty result set is still a valid evaluation.
                empty = _backend_dataset(annotations, ids)
                coco_dt = _coco_from_dict(COCO, dict(empty, annotations=[]))
            coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
            _run_cocoeval(coco_eval, img_ids, cat_ids)
    return BboxEvaluation(
        stats=np.asarray(coco_eval.stats[:12], dtype=np.float64),
        precision=np.asarray(coco_eval.eval["precision"]),
        category_ids=[user_category_of[int(c)] for c in coco_eval.params.catIds],
        # Only the statistics lines; the backends' progress messages differ.
        summary="\n".join(
            line for line in summary.getvalue().splitlines() if line.lstrip().startswith("Average")
        ),
    )


def _run_cocoeval(coco_eval, img_ids: list[int], cat_ids: list[int]) -> None:
    coco_eval.params.imgIds = img_ids
    coco_eval.params.catIds = cat_ids
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
            c["id"]: str(c["id"] if c["name"] is None else c["name"])
            for c in self.annotations["categories"]
        }

    @property
    def category_ids(self) -> list[int | None]:
        """COCO category id of each contiguous label: the dataset's selection.

        ``None`` for a label of the model that is no category of the file (a
        dataset built with ``model_classes`` the json lacks): its predictions
        are left out, as those of any category not evaluated.

        ``dataset_meta["category_ids"]`` (what
        :class:`~mtvision.data.coco_detection.CocoDetection` sets); else the
        ascending ids of the categories named in ``dataset_meta["classes"]``
        (mmdet's rule) when they all are categories of the file; else every
        category of the file, ascending.
        """
        meta = self.dataset_meta or {}
        if "category_ids" in meta:
            return [None if c is None else int(c) for c in meta["category_ids"]]
        names = meta.get("classes")
        id_of = {name: cat_id for cat_id, name in self.category_names.items()}
        if names and all(name in id_of for name in names):
            return sorted(id_of[name] for name in names)
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
                raise AnnotationError(
                    f"prediction for image id {img_id}: not an image of {self.ann_file}"
                )
            boxes = to_numpy(prediction["boxes"]).astype(np.float64).reshape(-1, 4)
            scores = to_numpy(prediction["scores"]).astype(np.float64).reshape(-1)
            labels = to_numpy(prediction["labels"]).astype(np.int64).reshape(-1)
            if not len(boxes) == len(scores) == len(labels):
                raise AnnotationError(
                    f"prediction for image id {img_id}: {len(boxes)} boxes, {len(scores)} scores "
                    f"and {len(labels)} labels"
                )
            if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
                raise AnnotationError(
                    f"prediction for image id {img_id}: boxes or scores are not finite (NaN/inf)"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
                raise AnnotationError(
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
                raise AnnotationError(
                    f"image id {result['img_id']} was predicted twice; each image of the test "
                    "set must be evaluated once"
                )
            seen.add(result["img_id"])
        category_ids = self.category_ids
        unknown = sorted(set(category_ids) - set(self.category_names) - {None})
        if unknown:
            raise AnnotationError(
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
        evaluated = [cat_id for cat_id in category_ids if cat_id is not None]
        return self.evaluate_results(coco_results, img_ids=seen, cat_ids=evaluated)

    def evaluate_results(
        self,
        coco_results: Sequence[dict],
        img_ids: Iterable[int] | None = None,
        results_source: str = "predictions",
        cat_ids: Iterable[int] | None = None,
    ) -> dict[str, float]:
        """The 12 statistics of COCO result entries against :attr:`ann_file` (no prefix).

        ``img_ids=None`` evaluates every image of the annotation file, as the
        COCO evaluation server does with a results file; ``cat_ids=None`` every
        category (the metric passes its dataset's selection, :attr:`category_ids`).
        """
        evaluation = evaluate_bbox(
            self.annotations,
            coco_results,
            img_ids,
            self.backend,
            results_source=results_source,
            ann_source=self.ann_file,
            cat_ids=cat_ids,
        )
        print_log(f"COCO bbox evaluation ({self.backend}):\n{evaluation.summary}", logger="current")
        if self.classwise:
            table = classwise_ap_table(evaluation, self.category_names)
            print_log(f"Per-category bbox AP:\n{table}", logger="current")
        return {
            name: float(value)
            for name, value in zip(COCO_BBOX_STAT_NAMES, evaluation.stats, strict=True)
        }
