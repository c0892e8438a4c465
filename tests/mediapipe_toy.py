"""Phone-graph ``.tflite`` files for the MediaPipe tests, converted here with litert_torch
(the project's exporter, ``mtvision.export.litert_export``, may not be on this branch):
the file carries the ``"mtvision"`` ``Model.metadata`` entry (the deploy metadata JSON),
as the exporter writes it."""

from __future__ import annotations

import json

from mtvision.export.deploy import DeployModel, deploy_metadata


def _with_entry(model_bytes: bytes, name: str, data: bytes) -> bytes:
    """``model_bytes`` with a ``Model.metadata`` entry ``name`` holding ``data``."""
    import flatbuffers
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    buffer = schema.BufferT()
    buffer.data = list(data)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def phone_tflite(model, input_size, classes=None, topk=3, class_map=False) -> tuple[bytes, dict]:
    """``model``'s phone graph converted to ``.tflite`` bytes with the ``"mtvision"`` entry,
    and that metadata dict."""
    import litert_torch

    model.eval()
    deploy = DeployModel(model, topk, phone=True, class_map=class_map, channels_last=True).eval()
    example = deploy.example_images(input_size, 1)
    output_map = deploy.output_map(example)
    metadata = deploy_metadata(deploy, input_size, output_map, classes=classes)
    metadata = json.loads(json.dumps(metadata))
    edge = litert_torch.convert(deploy, (example,))
    data = bytes(edge.model_content())
    return _with_entry(data, "mtvision", json.dumps(metadata).encode()), metadata
