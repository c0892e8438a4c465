"""Deterministic synthetic "shapes" dataset written in ImageNet, COCO and VOC layouts.

Every image shows one large *dominant* shape (it defines the classification
label) plus 0-4 smaller distractor shapes of random classes, on a textured,
noisy background. Classes differ by geometry only: each shape gets a random
colour, rotation, aspect jitter and shading, so colour never identifies the
class. The same pixels (one JPEG encoding, quality :data:`JPEG_QUALITY`) are
written to three standard layouts under ``out_dir``::

    imagenet/{train,val}/<class_name>/<image_id>.jpg
    coco/{train2017,val2017}/<image_id>.jpg
    coco/annotations/instances_{train2017,val2017}.json
    VOCdevkit/VOC2012/JPEGImages/<image_id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<image_id>.png
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    dataset_info.json

Label spaces (deliberately different, as in the real datasets):

- ImageNet folders: class names of :data:`SHAPE_CLASSES`; folder loaders sort
  names alphabetically, so their indices are not ``SHAPE_CLASSES`` order.
- COCO ``category_id``: :data:`COCO_CATEGORY_IDS`, non-contiguous like real
  COCO (1, 2, 4, 5, 7, 9), so adapters must map ids to contiguous labels.
- VOC mask values: 0 = background, ``1 + SHAPE_CLASSES.index(name)`` for each
  shape, 255 = ignore band (about 3 px) along object boundaries.

Generation is a pure function of the arguments: each image draws from its own
``numpy.random.default_rng((seed, split, index))``, files are written with
fixed encoder settings, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mtvision.utils.palette import voc_colormap

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon")
"""Shape class names; VOC mask value of ``SHAPE_CLASSES[i]`` is ``i + 1``."""

COCO_CATEGORY_IDS: tuple[int, ...] = (1, 2, 4, 5, 7, 9)
"""COCO ``category_id`` of ``SHAPE_CLASSES[i]`` (non-contiguous on purpose)."""

JPEG_QUALITY = 90
VOC_IGNORE_INDEX = 255
SPLITS: tuple[str, ...] = ("train", "val")
COCO_SPLIT_DIRS = {"train": "train2017", "val": "val2017"}

MAX_DISTRACTORS = 4
MIN_VISIBLE_AREA = 20  # px; smaller visible instances are never kept
MIN_COMPONENT_AREA = 8  # px; no instance is left with crumbs smaller than this
MAX_DOMINANT_OCCLUSION = 0.30  # fraction of the dominant shape distractors may cover
MAX_DISTRACTOR_AREA_RATIO = 0.5  # distractor area <= this x dominant area
PLACEMENT_TRIES = 12
_SUBPIXEL_SHIFT = 4  # cv2 fixed-point bits: vertices keep 1/16 px precision


@dataclass(frozen=True)
class ShapeInstance:
    """One visible object of a scene.

    ``class_index`` indexes :data:`SHAPE_CLASSES`; ``mask`` is the VISIBLE
    (after occlusion) hard mask, bool array of shape (H, W).
    """

    class_index: int
    mask: np.ndarray
    is_dominant: bool


@dataclass(frozen=True)
class Scene:
    """A rendered image with its instances.

    ``image``: (H, W, 3) uint8 RGB. ``instances``: in drawing order, the
    dominant shape first; later instances occlude earlier ones, and the
    instance masks are disjoint.
    """

    image: np.ndarray
    instances: list[ShapeInstance]

    @property
    def label(self) -> int:
        """Classification label: index of the dominant shape in SHAPE_CLASSES."""
        return self.instances[0].class_index


# ---------------------------------------------------------------- geometry


def _regular_polygon(n: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(2 * points, -np.pi / 2)
    outer[1::2] *= inner
    return outer


def _cross(half_width: float = 0.3) -> np.ndarray:
    w = half_width
    quarter = np.array([[w, -1.0], [w, -w], [1.0, -w]])  # one arm tip and inner corner
    turn = np.array([[0.0, 1.0], [-1.0, 0.0]])  # 90 degrees, applied to row vectors
    return np.concatenate([quarter @ np.linalg.matrix_power(turn, k) for k in range(4)])


# Unit outlines (circumradius about 1) in SHAPE_CLASSES order.
_UNIT_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular_polygon(48),
    "square": _regular_polygon(4, np.pi / 4),
    "triangle": _regular_polygon(3, -np.pi / 2),
    "star": _star(),
    "cross": _cross(),
    "hexagon": _regular_polygon(6),
}


def shape_polygon(class_index: int, radius: float, angle: float, aspect: float = 1.0) -> np.ndarray:
    """Outline of a shape centred at the origin: (N, 2) float64 (x, y) in px.

    ``radius`` is the circumradius in px, ``angle`` the rotation in radians,
    ``aspect`` stretches x by ``aspect`` and y by ``1 / aspect`` (area kept).
    """
    pts = _UNIT_OUTLINES[SHAPE_CLASSES[class_index]] * radius
    pts = pts * np.array([aspect, 1.0 / aspect])
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _fill(canvas: np.ndarray, polygon: np.ndarray, value: int, antialiased: bool) -> None:
    fixed = np.round(polygon * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    line_type = cv2.LINE_AA if antialiased else cv2.LINE_8
    cv2.fillPoly(canvas, [fixed], value, lineType=line_type, shift=_SUBPIXEL_SHIFT)


# ---------------------------------------------------------------- rendering


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _blend(image: np.ndarray, coverage: np.ndarray, fill, opacity: float = 1.0) -> None:
    """In place: ``image = image * (1 - a) + fill * a`` with ``a = coverage / 255 * opacity``.

    ``coverage`` is (H, W) uint8; ``fill`` is a colour (3,) or a callable
    ``fill(x0, y0, w, h) -> (h, w, 3)`` evaluated only on the covered box, which
    keeps the cost proportional to the object, not the image.
    """
    x0, y0, w, h = cv2.boundingRect(coverage)
    if w == 0 or h == 0:
        return
    roi = image[y0 : y0 + h, x0 : x0 + w]
    alpha = coverage[y0 : y0 + h, x0 : x0 + w, None].astype(np.float32) * np.float32(
        opacity / 255.0
    )
    colour = fill(x0, y0, w, h) if callable(fill) else np.asarray(fill, np.float32)
    roi += alpha * (colour - roi)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Textured float32 (H, W, 3) background: gradient + soft blobs + sharp lines."""
    theta = rng.uniform(0, 2 * np.pi)
    t = np.arange(width, dtype=np.float32)[None] * np.float32(np.cos(theta)) + np.arange(
        height, dtype=np.float32
    )[:, None] * np.float32(np.sin(theta))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0 = _random_colour(rng).astype(np.float32)
    c1 = _random_colour(rng).astype(np.float32)
    img = c0 + t[..., None] * (c1 - c0)

    for _ in range(rng.integers(2, 7)):
        blob = np.zeros((height, width), np.uint8)
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(8, width // 2)), int(rng.integers(8, height // 2)))
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        _blend(img, blob, _random_colour(rng), opacity=rng.uniform(0.25, 0.6))
    # Blurred blobs read as texture, not as shapes with edges a model could confuse.
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(2.0, 5.0)))

    for _ in range(rng.integers(2, 9)):
        line = np.zeros((height, width), np.uint8)
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(line, p0, p1, 255, int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
        _blend(img, line, _random_colour(rng), opacity=rng.uniform(0.3, 0.7))
    return img


def _shape_colour(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A random colour that stands out from what the shape covers (best of a few draws)."""
    under = image[mask].mean(axis=0)
    best, best_dist = None, -1.0
    for _ in range(8):
        colour = _random_colour(rng)
        dist = float(np.linalg.norm(colour - under))
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist >= 90:
            break
    return best


def _paint(
    rng: np.random.Generator, image: np.ndarray, polygon: np.ndarray, mask: np.ndarray
) -> None:
    """Alpha-blend a shaded, anti-aliased shape onto the float image, in place."""
    coverage = np.zeros(image.shape[:2], np.uint8)
    _fill(coverage, polygon, 255, antialiased=True)
    colour = _shape_colour(rng, image, mask).astype(np.float32)
    # A linear shade across the shape, so a flat colour patch is not the cue either.
    theta = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0, 60)
    centre = polygon.mean(axis=0)
    span = max(float(np.ptp(polygon, axis=0).max()), 1.0)

    def shaded(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        xs = np.arange(x0, x0 + w, dtype=np.float32)[None] - np.float32(centre[0])
        ys = np.arange(y0, y0 + h, dtype=np.float32)[:, None] - np.float32(centre[1])
        t = (xs * np.float32(np.cos(theta)) + ys * np.float32(np.sin(theta))) / np.float32(span)
        return np.clip(colour + (t * np.float32(strength))[..., None], 0, 255)

    _blend(image, coverage, shaded)


def _visible_ok(visible: np.ndarray) -> bool:
    """Visible mask is big enough, has no holes and no crumbs.

    Holes are excluded so COCO polygons (which cannot encode holes) describe
    the mask exactly.
    """
    if int(visible.sum()) < MIN_VISIBLE_AREA:
        return False
    m = visible.astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 2 and stats[1:, cv2.CC_STAT_AREA].min() < MIN_COMPONENT_AREA:
        return False
    _, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is None or bool((hierarchy[0][:, 3] < 0).all())


def render_scene(rng: np.random.Generator, width: int, height: int, dominant_class: int) -> Scene:
    """Render one image: a dominant shape of ``dominant_class`` plus 0-4 distractors.

    The dominant shape lies fully inside the image, has circumradius
    25-40 % of ``min(width, height)``, and distractors cover at most 30 % of
    it; each distractor has at most half its area, so the dominant is always
    the largest visible instance. Distractors may leave the frame, range from
    a few px to about a quarter of the image side, and are kept only if every
    instance stays visible (>= 20 px, no holes).
    """
    image = _background(rng, height, width)
    instance_map = np.zeros((height, width), np.uint8)  # 0 = background, k = instance k
    classes: list[int] = []
    side = min(width, height)

    dom_poly = shape_polygon(
        dominant_class,
        radius=rng.uniform(0.25, 0.40) * side,
        angle=rng.uniform(0, 2 * np.pi),
        aspect=rng.uniform(0.87, 1.15),
    )
    lo, hi = dom_poly.min(axis=0), dom_poly.max(axis=0)
    offset = np.array(
        [rng.uniform(-lo[0], width - 1 - hi[0]), rng.uniform(-lo[1], height - 1 - hi[1])]
    )
    dom_poly = dom_poly + offset
    dom_mask = np.zeros((height, width), np.uint8)
    _fill(dom_mask, dom_poly, 1, antialiased=False)
    dom_mask = dom_mask.astype(bool)
    dom_area = int(dom_mask.sum())
    _paint(rng, image, dom_poly, dom_mask)
    instance_map[dom_mask] = 1
    classes.append(dominant_class)

    for _ in range(rng.integers(0, MAX_DISTRACTORS + 1)):
        class_index = int(rng.integers(0, len(SHAPE_CLASSES)))
        for _try in range(PLACEMENT_TRIES):
            # Log-uniform radius: many small objects, some large ones.
            radius = float(np.exp(rng.uniform(np.log(5.0), np.log(0.25 * side))))
            poly = shape_polygon(
                class_index, radius, rng.uniform(0, 2 * np.pi), rng.uniform(0.8, 1.25)
            ) + np.array([rng.uniform(0, width), rng.uniform(0, height)])
            mask = np.zeros((height, width), np.uint8)
            _fill(mask, poly, 1, antialiased=False)
            mask = mask.astype(bool)
            if mask.sum() > MAX_DISTRACTOR_AREA_RATIO * dom_area:
                continue
            new_id = len(classes) + 1
            touched = [int(k) for k in np.unique(instance_map[mask]) if k > 0]
            trial = instance_map.copy()
            trial[mask] = new_id
            if (trial == 1).sum() < (1 - MAX_DOMINANT_OCCLUSION) * dom_area:
                continue
            if all(_visible_ok(trial == k) for k in [*touched, new_id]):
                _paint(rng, image, poly, mask)
                instance_map = trial
                classes.append(class_index)
                break

    sigma = np.float32(rng.uniform(3, 10))
    image += rng.standard_normal(image.shape, dtype=np.float32) * sigma
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    instances = [
        ShapeInstance(class_index=c, mask=instance_map == k + 1, is_dominant=k == 0)
        for k, c in enumerate(classes)
    ]
    return Scene(image=image, instances=instances)


# ---------------------------------------------------------------- annotations


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons [[x0, y0, x1, y1, ...], ...] tracing a hole-free bool (H, W) mask.

    Contours are traced on a 2x nearest-upsampled mask and mapped back with
    ``(p + 0.5) / 2``, so they follow pixel outlines (not pixel centres) and
    ``pycocotools`` rasterises them back to exactly the same pixels.
    """
    up = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        pts = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / 2.0
        if len(pts) >= 3:
            polygons.append([float(v) for v in pts.ravel()])
    return polygons


def voc_class_mask(scene: Scene, band: bool = True) -> np.ndarray:
    """(H, W) uint8 VOC mask: 0 background, 1 + class index, 255 boundary band.

    Like real VOC, a band about 3 px wide (1 px outside, the object's
    outline, 1 px inside) around every object is marked 255 ("ignore").
    """
    height, width = scene.image.shape[:2]
    classes = np.zeros((height, width), np.uint8)
    instances = np.zeros((height, width), np.uint8)
    for k, inst in enumerate(scene.instances):
        classes[inst.mask] = inst.class_index + 1
        instances[inst.mask] = k + 1
    if band:
        kernel = np.ones((3, 3), np.uint8)
        different_neighbour = (cv2.dilate(instances, kernel) != instances) | (
            cv2.erode(instances, kernel) != instances
        )
        outline = different_neighbour & (instances > 0)
        classes[cv2.dilate(outline.astype(np.uint8), kernel).astype(bool)] = VOC_IGNORE_INDEX
    return classes


def coco_annotations(scene: Scene, image_id: int, first_ann_id: int) -> list[dict]:
    """COCO annotation dicts for a scene; bbox [x, y, w, h] px and area of the VISIBLE mask."""
    anns = []
    for k, inst in enumerate(scene.instances):
        ys, xs = np.nonzero(inst.mask)
        x0, y0 = int(xs.min()), int(ys.min())
        w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
        anns.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": COCO_CATEGORY_IDS[inst.class_index],
                "bbox": [float(x0), float(y0), float(w), float(h)],
                "area": float(len(xs)),
                "iscrowd": 0,
                "segmentation": mask_to_polygons(inst.mask),
            }
        )
    return anns


# ---------------------------------------------------------------- writing


def _encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _encode_voc_png(mask: np.ndarray, palette: bytes) -> bytes:
    png = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    png.putpalette(palette)
    buf = io.BytesIO()
    png.save(buf, format="PNG")
    return buf.getvalue()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def _json_text(obj: dict, compact: bool = False) -> str:
    # Compact output takes json's C encoder path: COCO files hold ~1e5 polygon numbers.
    if compact:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def image_id_for(split: str, index: int) -> str:
    """String id shared by all layouts, e.g. ``shapes_train_000123``."""
    return f"shapes_{split}_{index:06d}"


def balanced_labels(seed: int, split: str, count: int) -> np.ndarray:
    """Dominant classes for a split: round-robin over classes, deterministically shuffled."""
    labels = np.arange(count) % len(SHAPE_CLASSES)
    return np.random.default_rng((seed, SPLITS.index(split), 1_000_003)).permutation(labels)


def generate_shapes_dataset(
    out_dir: str | Path,
    seed: int = 0,
    num_train: int = 600,
    num_val: int = 150,
    min_size: int = 96,
    max_size: int = 192,
) -> dict:
    """Write the shapes dataset in ImageNet, COCO and VOC layouts under ``out_dir``.

    Image width and height are drawn independently from ``[min_size,
    max_size]``. COCO image ids are 1..num_train for train and continue
    num_train+1.. for val (unique across splits, like COCO). Returns a JSON-able
    summary: the root, per-layout paths, and image/annotation counts per split.
    """
    if min_size < 32 or max_size < min_size:
        raise ValueError(f"need 32 <= min_size <= max_size, got {min_size}, {max_size}")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"need at least one image per split, got {num_train}, {num_val}")
    root = Path(out_dir)
    imagenet = root / "imagenet"
    coco = root / "coco"
    voc = root / "VOCdevkit" / "VOC2012"
    palette = voc_colormap().tobytes()
    categories = [
        {"id": cid, "name": name, "supercategory": "shape"}
        for cid, name in zip(COCO_CATEGORY_IDS, SHAPE_CLASSES, strict=True)
    ]

    counts: dict[str, dict[str, int]] = {}
    voc_ids: dict[str, list[str]] = {}
    next_image_id = 1
    for split, count in (("train", num_train), ("val", num_val)):
        labels = balanced_labels(seed, split, count)
        images, annotations, ids = [], [], []
        for index in range(count):
            rng = np.random.default_rng((seed, SPLITS.index(split), index))
            width = int(rng.integers(min_size, max_size + 1))
            height = int(rng.integers(min_size, max_size + 1))
            scene = render_scene(rng, width, height, int(labels[index]))
            name = image_id_for(split, index)
            jpeg = _encode_jpeg(scene.image)

            _write(imagenet / split / SHAPE_CLASSES[scene.label] / f"{name}.jpg", jpeg)
            _write(coco / COCO_SPLIT_DIRS[split] / f"{name}.jpg", jpeg)
            _write(voc / "JPEGImages" / f"{name}.jpg", jpeg)
            _write(
                voc / "SegmentationClass" / f"{name}.png",
                _encode_voc_png(voc_class_mask(scene), palette),
            )

            images.append(
                {"id": next_image_id, "file_name": f"{name}.jpg", "width": width, "height": height}
            )
            annotations += coco_annotations(scene, next_image_id, len(annotations) + 1)
            ids.append(name)
            next_image_id += 1

        _write(
            coco / "annotations" / f"instances_{COCO_SPLIT_DIRS[split]}.json",
            _json_text(
                {
                    "info": {
                        "description": "mtvision synthetic shapes",
                        "version": "1.0",
                        "year": 2017,
                        "contributor": "mtvision.synthetic.shapes",
                        "seed": seed,
                    },
                    "licenses": [{"id": 1, "name": "CC0", "url": ""}],
                    "images": images,
                    "annotations": annotations,
                    "categories": categories,
                },
                compact=True,
            ),
        )
        voc_ids[split] = ids
        counts[split] = {"images": count, "annotations": len(annotations)}

    seg_sets = voc / "ImageSets" / "Segmentation"
    for name, ids in (
        ("train", voc_ids["train"]),
        ("val", voc_ids["val"]),
        ("trainval", voc_ids["train"] + voc_ids["val"]),
    ):
        _write(seg_sets / f"{name}.txt", "".join(f"{i}\n" for i in ids))

    summary = {
        "root": str(root),
        "seed": seed,
        "classes": list(SHAPE_CLASSES),
        "coco_category_ids": dict(zip(SHAPE_CLASSES, COCO_CATEGORY_IDS, strict=True)),
        "voc_class_indices": {"background": 0, **{n: i + 1 for i, n in enumerate(SHAPE_CLASSES)}},
        "voc_ignore_index": VOC_IGNORE_INDEX,
        "image_size_range": [min_size, max_size],
        "jpeg_quality": JPEG_QUALITY,
        "counts": counts,
        "layouts": {
            "imagenet": str(imagenet),
            "coco_train_images": str(coco / "train2017"),
            "coco_val_images": str(coco / "val2017"),
            "coco_train_annotations": str(coco / "annotations" / "instances_train2017.json"),
            "coco_val_annotations": str(coco / "annotations" / "instances_val2017.json"),
            "voc_root": str(voc),
        },
    }
    # Relative paths in the on-disk copy keep the tree's bytes independent of where it lives.
    info = {
        **summary,
        "root": ".",
        "layouts": {k: str(Path(v).relative_to(root)) for k, v in summary["layouts"].items()},
    }
    _write(root / "dataset_info.json", _json_text(info))
    return summary
