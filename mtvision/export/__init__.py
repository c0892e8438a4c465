"""Deployment export: ONNX files checked against the torch model with onnxruntime.

- :func:`export_deploy_onnx` / :class:`DeployModel`: the deployed graph, uint8 images
  in and final results out (post-processing inside), with its metadata.
- :class:`OnnxRuntimeModel`: such a file behind the torch model's ``predict``.
- :func:`export_onnx` / :class:`Uint8Input`: a model's raw tensor forward.
- :func:`export_deployed` / :func:`export_raw_checked`: export, compare with torch on
  onnxruntime, and only then replace the target file (:mod:`mtvision.export.verify`).
"""

from mtvision.export.deploy import (
    DeployModel,
    deploy_metadata,
    export_deploy_onnx,
    read_deploy_metadata,
)
from mtvision.export.deployed_model import DeployedModel, OnnxRuntimeModel, check_deploy_matches
from mtvision.export.onnx_export import (
    Uint8Input,
    check_onnx_matches,
    export_onnx,
    flatten_outputs,
    onnx_session,
)
from mtvision.export.verify import (
    ExportMismatchError,
    HeadAgreement,
    deployed_agreement,
    export_deployed,
    export_raw_checked,
)

__all__ = [
    "DeployModel",
    "DeployedModel",
    "ExportMismatchError",
    "HeadAgreement",
    "OnnxRuntimeModel",
    "Uint8Input",
    "check_deploy_matches",
    "check_onnx_matches",
    "deploy_metadata",
    "deployed_agreement",
    "export_deploy_onnx",
    "export_deployed",
    "export_onnx",
    "export_raw_checked",
    "flatten_outputs",
    "onnx_session",
    "read_deploy_metadata",
]
