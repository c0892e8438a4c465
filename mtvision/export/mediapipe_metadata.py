"""TFLite metadata for MediaPipe Tasks, written with MediaPipe's own metadata writers.

:func:`add_mediapipe_metadata` takes a phone graph's ``.tflite`` (``DeployModel(...,
phone=True, channels_last=True)``: uint8 (1, H, W, 3) RGB in, normalisation inside) and
mtvision's deploy metadata dict (:func:`~mtvision.export.deploy_metadata`) and writes the
TFLite metadata that MediaPipe Tasks read, with
``mediapipe.tasks.python.metadata.metadata_writers``:

- classification -> ``image_classifier``: labels on the ``probabilities`` (1, K) output;
  :class:`mediapipe.tasks.python.vision.ImageClassifier` returns its top-k categories.
- detection -> ``object_detector.create_for_models_without_nms``: raw ``box_regression``
  (1, A, 4) codes in (ty, tx, th, tw) order (the phone graph's ``box_code_order
  "yxhw"``, the order MediaPipe's ``TensorsToDetectionsCalculator`` is configured with
  for SSD files: no graph change is needed) and ``anchor_scores`` (1, A, C), with an SSD
  *fixed anchors* schema built from the recorded anchors (xyxy input pixels ->
  centre/size as fractions of the input) and the box coder's weights as MediaPipe's
  x/y/w/h scales (torchvision's ``BoxCoder((10, 10, 5, 5))`` decodes
  ``ctr = d / w * anchor_size + anchor_ctr``, ``size = exp(d / w) * anchor_size``, which
  is MediaPipe's decoding with ``apply_exponential_on_box_size``); scores are already
  probabilities (softmax without background, or sigmoid), so ``sigmoid_score`` is off;
  ``test_cfg["score_threshold"]`` becomes the score tensor's score-thresholding process
  unit. MediaPipe decodes and suppresses the boxes itself (its ``ObjectDetector``), as
  Google's own SSD files ship.

  What MediaPipe's post-processing then does, and where it differs from mtvision's
  (:func:`~mtvision.ops.decode_detections`; read from MediaPipe's
  ``detection_postprocessing_graph.cc``, ``tensors_to_detections_calculator.cc``,
  ``non_max_suppression_calculator.cc``, ``detection_transformation_calculator.cc``):

  - each anchor becomes ONE candidate, its highest-scoring class (``category_allowlist``
    / ``denylist`` restrict the classes looked at), kept when its score is >= the
    threshold (mtvision: every class of every anchor above the threshold, top
    ``topk_candidates`` per class);
  - NMS is greedy IoU NMS over all classes together (class-agnostic: a box of one class
    suppresses an overlapping box of another) at IoU > 0.3, a fixed value
    (:data:`MEDIAPIPE_NMS_IOU`; its Python/C/Java options have no NMS setting); mtvision
    suppresses per class at ``test_cfg["nms_iou_threshold"]`` (the writer warns when that
    is not 0.3), on boxes clipped to the image (MediaPipe's are not clipped);
  - ``max_results`` caps the kept boxes (the runner passes ``max_detections``);
  - pixel boxes: ``origin = int(relative_min * size)`` clamped to [0, size] and
    ``width = int(relative_width * size)``: truncated to whole pixels, and a box that
    starts left of (above) the image gets origin 0 with its full width, so its far edge
    is too far right (down) by the part outside the image.

  So for a one-class detector with ``nms_iou_threshold=0.3`` MediaPipe keeps the same
  detections with the same scores as mtvision, their corners within one pixel (after
  the runner's half-pixel centring, :mod:`~mtvision.export.mediapipe_runtime`) except the
  far edge of boxes cut by the left or top border. With several classes the
  highest-scoring detection of an image is the same; the rest may differ (one class
  per anchor, class-agnostic NMS).
- segmentation -> ``image_segmenter``: labels, activation SOFTMAX on ``class_logits``
  (1, H, W, K) (MediaPipe makes the category mask, the argmax); the class-map variant
  (``mask`` (1, H, W) uint8) gets activation NONE.

The input gets ``norm_mean=[0]``, ``norm_std=[1]``: the graph takes uint8 pixels and
normalises inside, and MediaPipe feeds a uint8 input tensor the pixels unchanged.

A file may already carry other ``Model.metadata`` entries, e.g. ``"mtvision"`` (the JSON
of :func:`~mtvision.export.deploy_metadata`, put in by the exporter): MediaPipe's
populator keeps them; :func:`add_mediapipe_metadata` checks they survived.

MediaPipe Tasks run one model head per file: a multi-task file is refused (ExportError
naming its heads); export each head to its own file for MediaPipe.

**The metadata-version workaround.** ``mediapipe==1.2.2``'s
``mediapipe/tasks/python/metadata/metadata.py`` imports
``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`` (a pybind module that
computes the metadata's ``min_parser_version``), which the wheel does not ship: importing
the metadata writers raises ``ModuleNotFoundError``. Neither ``libmediapipe.so`` nor
``mediapipe_c_bindings`` exports that function (``nm -D`` shows no symbol for it), so
:func:`_install_metadata_version_module` registers, only when the import fails, a module
under that name whose ``GetMinimumMetadataParserVersion(buffer)`` computes the version
as MediaPipe's ``mediapipe/tasks/cc/metadata/metadata_version.cc`` does: ``1.0.0``,
raised to the schema version that introduced each member present in the metadata
flatbuffer (vocabulary files 1.0.1; input/output process units, BERT/SentencePiece
tokenizers 1.1.0; tensor groups 1.2.0; regex tokenizer 1.2.1; audio properties 1.3.0;
ScaNN index files 1.4.0; associated-file versions 1.4.1; custom metadata 1.5.0). It
covers every member that function checks, not only the ones these writers use, so a
value written here equals the one the C++ would write. A wheel that ships the module
uses its own.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Mapping

from mtvision.errors import ExportError
from mtvision.export.litert_metadata import tflite_metadata_entries

logger = logging.getLogger(__name__)

_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"

#: The name of the ``Model.metadata`` entry with mtvision's JSON metadata.
MTVISION_ENTRY = "mtvision"

#: MediaPipe ObjectDetector's NMS IoU threshold for files without NMS inside
#: (``NonMaxSuppressionOptions.min_suppression_threshold`` of its C++ API, 0.3, which its
#: Python, C and Java options do not expose).
MEDIAPIPE_NMS_IOU = 0.3

#: The ``Model.metadata`` entry MediaPipe's populator writes.
TFLITE_METADATA_ENTRY = "TFLITE_METADATA"


# ------------------------------------------------------------ metadata version


def minimum_metadata_parser_version(buffer: bytes) -> str:
    """The ``min_parser_version`` of a ``ModelMetadata`` flatbuffer (``M001``), computed
    as ``metadata_version.cc``'s ``GetMinimumMetadataParserVersion`` does.

    Raises:
        ValueError: ``buffer`` is not a ModelMetadata flatbuffer.
    """
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    data = bytes(buffer)
    if len(data) < 8 or data[4:8] != b"M001":
        raise ValueError("The model metadata is not a valid FlatBuffer buffer.")
    metadata = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(data, 0))
    version = [(1, 0, 0)]

    def need(v: tuple[int, int, int]) -> None:
        version[0] = max(version[0], v)

    def files(entries) -> None:
        for entry in entries or ():
            if entry.type == fb.AssociatedFileType.VOCABULARY:
                need((1, 0, 1))
            if entry.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
                need((1, 4, 0))
            if entry.version is not None:
                need((1, 4, 1))

    def units(entries) -> None:
        for unit in entries or ():
            if unit.optionsType in (
                fb.ProcessUnitOptions.BertTokenizerOptions,
                fb.ProcessUnitOptions.SentencePieceTokenizerOptions,
            ):
                need((1, 1, 0))
            if unit.optionsType == fb.ProcessUnitOptions.RegexTokenizerOptions:
                need((1, 2, 1))

    def tensors(entries) -> None:
        for tensor in entries or ():
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            content = tensor.content
            if (
                content is not None
                and content.contentPropertiesType == fb.ContentProperties.AudioProperties
            ):
                need((1, 3, 0))

    for subgraph in metadata.subgraphMetadata or ():
        tensors(subgraph.inputTensorMetadata)
        tensors(subgraph.outputTensorMetadata)
        files(subgraph.associatedFiles)
        if subgraph.inputProcessUnits is not None:
            need((1, 1, 0))
            units(subgraph.inputProcessUnits)
        if subgraph.outputProcessUnits is not None:
            need((1, 1, 0))
            units(subgraph.outputProcessUnits)
        if subgraph.inputTensorGroups is not None or subgraph.outputTensorGroups is not None:
            need((1, 2, 0))
        if subgraph.customMetadata is not None:
            need((1, 5, 0))
    files(metadata.associatedFiles)
    return ".".join(str(v) for v in version[0])


def _install_metadata_version_module() -> None:
    """Make ``_pywrap_metadata_version`` importable when the wheel lacks it (see the
    module docstring); a wheel that ships it keeps its own."""
    try:
        importlib.import_module(_VERSION_MODULE)
        return
    except ModuleNotFoundError:
        pass
    parts = _VERSION_MODULE.split(".")
    for i in range(3, len(parts)):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = []
            sys.modules[name] = package
            setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], package)
    module = types.ModuleType(_VERSION_MODULE)
    module.__doc__ = (
        "mtvision's stand-in for the pybind module mediapipe 1.2.2 does not ship "
        "(mtvision.export.mediapipe_metadata)."
    )
    module.GetMinimumMetadataParserVersion = minimum_metadata_parser_version
    sys.modules[_VERSION_MODULE] = module
    setattr(sys.modules[".".join(parts[:-1])], parts[-1], module)


def metadata_writers():
    """MediaPipe's ``metadata_writers`` package (its version module made importable).

    Raises:
        ExportError: mediapipe is not installed (with the install hint).
    """
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        raise ExportError(
            "MediaPipe metadata needs mediapipe (pip install -e '.[mediapipe]')"
        ) from None
    _install_metadata_version_module()
    package = "mediapipe.tasks.python.metadata.metadata_writers"
    for module in (
        "metadata_info",
        "metadata_writer",
        "image_classifier",
        "object_detector",
        "image_segmenter",
    ):
        importlib.import_module(f"{package}.{module}")
    return importlib.import_module(package)


# ------------------------------------------------------------ Model.metadata


def model_metadata_entries(model_bytes: bytes) -> dict[str, bytes]:
    """``{name: buffer bytes}`` of a ``.tflite`` flatbuffer's ``Model.metadata`` entries
    (:func:`~mtvision.export.litert_metadata.tflite_metadata_entries`).

    Raises:
        ExportError: not a TFLite flatbuffer.
    """
    return tflite_metadata_entries(bytes(model_bytes))


# ------------------------------------------------------------ the writers


def single_head(metadata: Mapping) -> tuple[str, Mapping]:
    """The one head of ``metadata`` (name, entry).

    Raises:
        ExportError: several heads (MediaPipe Tasks run one per file), naming them.
    """
    heads = dict(metadata["heads"])
    if len(heads) != 1:
        raise ExportError(
            f"MediaPipe Tasks run a model with one head; this one has {sorted(heads)}: "
            "export each head to its own .tflite for MediaPipe"
        )
    return next(iter(heads.items()))


def _labels(writers, info: Mapping):
    names = info.get("classes") or [str(i) for i in range(int(info["num_classes"]))]
    return writers.metadata_writer.Labels().add(list(names))


def add_mediapipe_metadata(model_bytes: bytes, metadata: Mapping) -> bytes:
    """``model_bytes`` (a phone graph's ``.tflite``) with MediaPipe Tasks' metadata for
    its one head (see the module docstring); other ``Model.metadata`` entries (e.g.
    ``"mtvision"``) are kept.

    Args:
        model_bytes: the ``.tflite`` flatbuffer.
        metadata: mtvision's deploy metadata (:func:`~mtvision.export.deploy_metadata`)
            of that file, with ``phone_outputs``.

    Raises:
        ExportError: mediapipe missing (install hint), several heads, a head that is
            not a phone graph's, outputs the writer cannot take (its message), or an
            entry lost by the writer.
    """
    writers = metadata_writers()
    name, info = single_head(metadata)
    if not info.get("phone_outputs"):
        raise ExportError(
            f"head {name!r} is not a phone graph's (phone_outputs): MediaPipe reads the "
            "phone graph (DeployModel(..., phone=True, channels_last=True))"
        )
    before = model_metadata_entries(model_bytes)
    buffer = bytearray(model_bytes)
    mean, std = [0.0], [1.0]
    task = info["task"]
    try:
        if task == "classification":
            writer = writers.image_classifier.MetadataWriter.create(
                buffer, mean, std, _labels(writers, info)
            )
        elif task == "detection":
            writer = _detector_writer(writers, buffer, info, metadata)
        elif task == "segmentation":
            segmenter = writers.image_segmenter
            activation = (
                segmenter.Activation.NONE
                if "mask" in info["outputs"]
                else segmenter.Activation.SOFTMAX
            )
            writer = segmenter.MetadataWriter.create(
                buffer, mean, std, _labels(writers, info), activation=activation
            )
        else:
            raise ExportError(f"head {name!r}: MediaPipe Tasks have no task for {task!r}")
        written, _ = writer.populate()
    except ExportError:
        raise
    except (ValueError, TypeError) as error:
        raise ExportError(f"MediaPipe's {task} metadata writer refused the file: {error}") from None
    written = bytes(written)
    after = model_metadata_entries(written)
    lost = sorted(set(before) - {TFLITE_METADATA_ENTRY} - set(after))
    changed = sorted(
        key
        for key in before
        if key != TFLITE_METADATA_ENTRY and key in after and after[key] != before[key]
    )
    if lost or changed:
        raise ExportError(
            f"MediaPipe's metadata writer lost or changed the entries {lost + changed}"
        )
    return written


def _detector_writer(writers, buffer: bytearray, info: Mapping, metadata: Mapping):
    """``object_detector.create_for_models_without_nms`` with the recorded anchors.

    Raises:
        ExportError: codes not in the (ty, tx, th, tw) order MediaPipe decodes.
    """
    order = info.get("box_code_order")
    if order != "yxhw":
        raise ExportError(
            f"MediaPipe's SSD decoder reads box codes as (ty, tx, th, tw) (box_code_order "
            f"'yxhw'); this file's box_regression is {order!r}: export it again with "
            "this mtvision"
        )
    nms = float(info.get("test_cfg", {}).get("nms_iou_threshold", MEDIAPIPE_NMS_IOU))
    if nms != MEDIAPIPE_NMS_IOU:
        logger.warning(
            "MediaPipe's ObjectDetector suppresses at IoU > %s (fixed: no option of its "
            "Python, C or Java API); this model's test_cfg nms_iou_threshold is %s, so "
            "MediaPipe keeps %s overlapping boxes than mtvision's predict",
            MEDIAPIPE_NMS_IOU,
            nms,
            "fewer" if nms > MEDIAPIPE_NMS_IOU else "more",
        )
    detector = writers.object_detector
    info_writer = writers.metadata_info
    height, width = (float(v) for v in metadata["input_size"])
    anchors = []
    for x1, y1, x2, y2 in info["anchors"]:
        anchors.append(
            detector.FixedAnchor(
                x_center=(x1 + x2) / 2 / width,
                y_center=(y1 + y2) / 2 / height,
                width=(x2 - x1) / width,
                height=(y2 - y1) / height,
            )
        )
    wx, wy, ww, wh = (float(v) for v in info["box_coder_weights"])
    decoding = detector.TensorsDecodingOptions(
        num_classes=int(info["num_classes"]),
        num_boxes=len(anchors),
        num_coords=4,
        keypoint_coord_offset=0,
        num_keypoints=0,
        # MediaPipe checks 2 (x, y) even with no keypoints.
        num_values_per_keypoint=2,
        x_scale=wx,
        y_scale=wy,
        w_scale=ww,
        h_scale=wh,
        apply_exponential_on_box_size=True,
        sigmoid_score=False,
    )
    fields = list(info["outputs"])
    order = (
        info_writer.RawDetectionOutputTensorsOrder.SCORE_LOCATION
        if fields.index("anchor_scores") < fields.index("box_regression")
        else info_writer.RawDetectionOutputTensorsOrder.LOCATION_SCORE
    )
    writer = detector.MetadataWriter.create_for_models_without_nms(
        buffer,
        [0.0],
        [1.0],
        _labels(writers, info),
        detector.SsdAnchorsOptions(detector.FixedAnchorsSchema(anchors)),
        decoding,
        output_tensors_order=order,
    )
    threshold = info.get("test_cfg", {}).get("score_threshold")
    if threshold is not None:
        for output in writer.writer._output_mds:
            if getattr(output, "name", None) == "score":
                output._score_thresholding_md = info_writer.ScoreThresholdingMd(float(threshold))
    return writer
