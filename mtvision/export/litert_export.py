"""The phone graph as a LiteRT (``.tflite``) file, converted by ``litert-torch``.

:func:`export_deploy_tflite` converts :class:`~mtvision.export.deploy.DeployModel`'s
phone graph (``phone=True, channels_last=True``: uint8 RGB (1, H, W, 3) in, mean/std
inside; classification ``probabilities`` (1, K); detection raw ``anchor_scores``
(1, A, C) and ``box_regression`` (1, A, 4) with the anchors in the metadata;
segmentation ``class_logits`` (1, H, W, K), or with ``class_map`` the uint8 ``mask``
(1, H, W)) with ``litert_torch.convert`` (torch.export, then LiteRT's MLIR converter);
the TF-legacy resizes it spells in four ops become LiteRT's one
(:func:`~mtvision.export.litert_rewrite.fuse_legacy_resizes`).
The file's batch is fixed to 1, as LiteRT apps and MediaPipe Tasks feed one camera
frame at a time; the runtime (:mod:`mtvision.export.litert_runtime`) runs a batch image
by image. Its metadata list holds mtvision's JSON (entry ``"mtvision"``,
:mod:`mtvision.export.litert_metadata`) and, when ``mediapipe`` is installed,
MediaPipe's (``"TFLITE_METADATA"`` + label files,
:func:`mtvision.export.mediapipe_metadata.add_mediapipe_metadata`) so MediaPipe Tasks'
``ImageClassifier`` / ``ObjectDetector`` / ``ImageSegmenter`` load it as is.

Optional extra: ``pip install -e '.[litert]'`` (litert-torch, ai-edge-litert).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from torch import nn

from mtvision.errors import ExportError
from mtvision.export.deploy import INPUT_NAME, DeployModel, deploy_metadata
from mtvision.export.litert_metadata import (
    INSTALL_HINT,
    read_tflite_metadata,
    tflite_metadata_entries,
    with_mtvision_metadata,
)
from mtvision.export.litert_rewrite import fuse_legacy_resizes
from mtvision.utils.atomic_files import atomic_write_bytes

__all__ = ["add_phone_metadata", "export_deploy_tflite", "read_tflite_metadata"]

logger = logging.getLogger(__name__)
MEDIAPIPE_HINT = "pip install -e '.[mediapipe]'"


def export_deploy_tflite(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] | None,
    *,
    classes: Mapping[str, Sequence[str] | None] | None = None,
    topk: int = 5,
    seg_logits: bool = False,
    source: Mapping[str, str] | None = None,
    class_map: bool = False,
) -> str:
    """Write ``model``'s phone graph to a float ``.tflite`` at ``path`` (atomically).

    Args:
        model: a MultiTaskModel (any heads); put in eval mode for the conversion and restored.
        path: the file to write.
        input_size: (H, W) the file is fixed to (batch 1); required.
        classes: head name -> class names for the metadata (``None``: ids only).
        topk: recorded for classification heads (the file returns all probabilities;
            the runtime's finishing keeps the top ``topk``).
        seg_logits: not available (the phone graph returns the logits or the map).
        source: recorded as the metadata's ``source``.
        class_map: segmentation outputs the uint8 class map (argmax inside).

    Returns ``path`` as a string.

    Raises:
        ExportError: no ``input_size``, ``seg_logits``, litert-torch not installed (the
            install hint), a model litert-torch cannot convert (its first message line),
            or any :class:`DeployModel` error.
    """
    path = os.fspath(path)
    if input_size is None:
        raise ExportError(".tflite files have a fixed input size; pass input_size=(H, W)")
    size = tuple(int(v) for v in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ExportError(f"input_size must be (H, W) positive, got {tuple(input_size)}")
    if seg_logits:
        raise ExportError(
            "seg_logits goes with ONNX; a .tflite returns the class logits (or, with "
            "class_map, the class map)"
        )
    try:
        import litert_torch
    except ImportError:
        raise ExportError(f"exporting .tflite files needs litert-torch ({INSTALL_HINT})") from None

    deploy = DeployModel(model, topk=topk, phone=True, class_map=class_map, channels_last=True)
    example = deploy.example_images(size, batch=1)
    was_training = model.training
    deploy.eval()
    try:
        output_map = deploy.output_map(example)
        try:
            converted = litert_torch.convert(deploy, (example,))
        except Exception as error:  # torch.export / the MLIR converter raise many types
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ExportError(
                f"litert-torch cannot convert {type(model).__name__} to .tflite "
                f"({type(error).__name__}: {first[:300]})"
            ) from None
    finally:
        model.train(was_training)
    content = converted.model_content()
    if callable(content):
        content = content()
    content = fuse_legacy_resizes(bytes(content))
    output_names = [name for fields in output_map.values() for name in fields.values()]
    metadata = deploy_metadata(deploy, size, output_map, classes=classes, source=source)
    content = with_mtvision_metadata(bytes(content), metadata, INPUT_NAME, output_names)
    content = add_phone_metadata(content, metadata, path)
    if tflite_metadata_entries(content, path).get("mtvision") is None:
        raise ExportError(f"{path}: the mtvision metadata did not survive the MediaPipe writer")
    atomic_write_bytes(path, content)
    return path


def add_phone_metadata(content: bytes, metadata: Mapping, shown: str) -> bytes:
    """``content`` with MediaPipe's metadata added when ``mediapipe`` (and mtvision's
    writer of it) can be imported; otherwise as it is, with one warning line naming
    ``shown`` and the install hint. A model of several heads is left as it is (MediaPipe
    Tasks run one head per file; LiteRT runs it, with mtvision's metadata), said in one
    info line."""
    if len(metadata["heads"]) > 1:
        logger.info(
            "%s: no MediaPipe metadata: MediaPipe Tasks run one head per file and this one "
            "has %s (export each head to its own .tflite for MediaPipe)",
            shown,
            list(metadata["heads"]),
        )
        return content
    try:
        import mediapipe  # noqa: F401

        from mtvision.export.mediapipe_metadata import add_mediapipe_metadata
    except ImportError as error:
        logger.warning(
            "%s: written without MediaPipe metadata (%s); for MediaPipe Tasks: %s",
            shown,
            error,
            MEDIAPIPE_HINT,
        )
        return content
    return add_mediapipe_metadata(content, dict(metadata))
