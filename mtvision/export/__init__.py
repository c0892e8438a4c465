"""Deployment export: ONNX files checked against the torch model with onnxruntime."""

from mtvision.export.onnx_export import (
    Uint8Input,
    check_onnx_matches,
    export_onnx,
    flatten_outputs,
    onnx_session,
)

__all__ = ["Uint8Input", "check_onnx_matches", "export_onnx", "flatten_outputs", "onnx_session"]
