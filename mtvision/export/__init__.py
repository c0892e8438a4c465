"""Deployment export: ONNX files checked against the torch model with onnxruntime.

- :func:`export_deploy_onnx` / :class:`DeployModel`: the deployed graph, uint8 images
  in and final results out (post-processing inside), with its metadata.
- :class:`OnnxRuntimeModel`: such a file behind the torch model's ``predict``.
- :func:`export_onnx` / :class:`Uint8Input`: a model's raw tensor forward.
"""

from mtvision.export.deploy import DeployModel, export_deploy_onnx, read_deploy_metadata
from mtvision.export.onnx_export import (
    Uint8Input,
    check_onnx_matches,
    export_onnx,
    flatten_outputs,
    onnx_session,
)
from mtvision.export.onnx_model import OnnxRuntimeModel, check_deploy_matches

__all__ = [
    "DeployModel",
    "OnnxRuntimeModel",
    "Uint8Input",
    "check_deploy_matches",
    "check_onnx_matches",
    "export_deploy_onnx",
    "export_onnx",
    "flatten_outputs",
    "onnx_session",
    "read_deploy_metadata",
]
