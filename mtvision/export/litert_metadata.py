"""The mtvision entry of a ``.tflite`` file: JSON in the flatbuffer's ``metadata`` list.

A TFLite model (``schema.fbs``) holds named metadata entries, each pointing at one of
its buffers; MediaPipe's metadata lives in the entry ``"TFLITE_METADATA"``, and
mtvision's JSON (:func:`~mtvision.export.deploy.deploy_metadata`) in the entry
``"mtvision"`` beside it, as ONNX files carry it in ``metadata_props``.
:func:`with_mtvision_metadata` re-serialises a converted model with LiteRT's own
generated schema (``ai_edge_litert.schema_py_generated`` through
``ai_edge_litert.tools.flatbuffer_utils``, the object API): it adds (or replaces) the
entry, names the graph's input and outputs as the metadata does and puts the outputs
in the metadata's order, so the names an interpreter reports are the metadata's.
:func:`tflite_metadata_entries` and :func:`read_tflite_metadata` read the entries
without unpacking the whole model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from mtvision.errors import ExportError

METADATA_NAME = "mtvision"
#: Bytes 4..8 of every TFLite flatbuffer.
TFLITE_IDENTIFIER = b"TFL3"
INSTALL_HINT = "pip install -e '.[litert]'"


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        raise ExportError(
            f"reading and writing .tflite files needs ai-edge-litert ({INSTALL_HINT})"
        ) from None
    return schema, flatbuffer_utils


def with_mtvision_metadata(
    content: bytes,
    metadata: Mapping,
    input_name: str | None = None,
    output_names: Sequence[str] | None = None,
    drop: Sequence[str] = (),
) -> bytes:
    """``content`` (a single-subgraph .tflite) with ``metadata`` as JSON under the entry
    ``"mtvision"``; with ``output_names``, its input tensor named ``input_name`` and its
    outputs named ``output_names`` in that order (the signature's ``output_0``,
    ``output_1``, ... are the converted module's outputs in order). Other metadata
    entries are kept, except those named in ``drop``.

    Raises:
        ExportError: ``content`` is not a single-subgraph TFLite model with one input and
            ``len(output_names)`` outputs.
    """
    schema, flatbuffer_utils = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    if output_names is not None:
        _name_tensors(schema, model, input_name, output_names)
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata).encode())
    dropped = {METADATA_NAME, *drop}
    entries = [m for m in (model.metadata or []) if _text(m.name) not in dropped]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*entries, entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _name_tensors(schema, model, input_name: str, output_names: Sequence[str]) -> None:
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].inputs) != 1:
        raise ExportError("the converted .tflite has not one subgraph with one input")
    subgraph = model.subgraphs[0]
    if len(subgraph.outputs) != len(output_names):
        raise ExportError(
            f"the converted .tflite has {len(subgraph.outputs)} outputs, the model "
            f"{len(output_names)} ({list(output_names)})"
        )
    # The signature maps output_<k> (k = the module's output position) to a tensor; the
    # subgraph's own output list may be in another order.
    order = list(subgraph.outputs)
    signature = (model.signatureDefs or [None])[0]
    if signature is not None and len(signature.outputs or []) == len(output_names):
        by_key = {_text(m.name): m.tensorIndex for m in signature.outputs}
        keys = [f"output_{k}" for k in range(len(output_names))]
        if set(keys) == set(by_key):
            order = [by_key[key] for key in keys]
    subgraph.outputs = order
    subgraph.tensors[subgraph.inputs[0]].name = input_name
    for index, name in zip(order, output_names, strict=True):
        subgraph.tensors[index].name = name
    if signature is not None:
        for mapping in signature.inputs or []:
            mapping.name = input_name
        signature.outputs = []
        for index, name in zip(order, output_names, strict=True):
            mapping = schema.TensorMapT()
            mapping.name, mapping.tensorIndex = name, index
            signature.outputs.append(mapping)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def tflite_metadata_entries(content: bytes, shown: str = "the .tflite") -> dict[str, bytes]:
    """``{entry name: its buffer's bytes}`` of a .tflite's metadata list.

    Raises:
        ExportError: ``content`` is not a TFLite flatbuffer (names ``shown``).
    """
    if len(content) < 8 or content[4:8] != TFLITE_IDENTIFIER:
        raise ExportError(f"{shown}: not a .tflite file (no TFL3 identifier)")
    schema, _ = _schema()
    try:
        model = schema.Model.GetRootAs(content, 0)
        entries = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # a model over 2 GB keeps buffers after the flatbuffer
                data = content[buffer.Offset() : buffer.Offset() + buffer.Size()]
            else:
                data = buffer.DataAsNumpy()
                data = b"" if isinstance(data, int) else data.tobytes()
            entries[_text(entry.Name())] = bytes(data)
    except Exception as error:  # flatbuffers raises struct/index errors on corrupt bytes
        raise ExportError(f"{shown}: a corrupt .tflite file ({type(error).__name__})") from None
    return entries


def read_tflite_metadata(path: str | os.PathLike) -> dict:
    """The mtvision metadata of a deployed ``.tflite`` file
    (:func:`~mtvision.export.litert_export.export_deploy_tflite`).

    Raises:
        ExportError: the file is missing, not a readable .tflite, or has no (or no JSON)
            ``"mtvision"`` entry; the message names the file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            content = file.read()
    except FileNotFoundError:
        raise ExportError(f"{path}: no such .tflite file") from None
    except OSError as error:
        raise ExportError(f"{path}: cannot be read ({error.strerror})") from None
    entries = tflite_metadata_entries(content, path)
    if METADATA_NAME not in entries:
        raise ExportError(
            f"{path}: no '{METADATA_NAME}' metadata; export it with "
            "tools/export.py CONFIG CKPT --out FILE.tflite"
        )
    try:
        return json.loads(entries[METADATA_NAME].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{path}: its '{METADATA_NAME}' metadata is not JSON ({error})") from None
