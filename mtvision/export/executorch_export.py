"""ExecuTorch (``.pte``) export of the phone graph, float or static int8, with the
mtvision metadata inside the program.

:func:`export_deploy_executorch` ``torch.export``-s the phone graph
(:class:`~mtvision.export.DeployModel` with ``phone=True, channels_last=True``: uint8
(1, H, W, 3) RGB in, normalisation inside; classification ``probabilities``, detection
raw ``anchor_scores``/``box_regression``, segmentation ``class_logits`` (1, H, W, K) or
the uint8 ``mask``), lowers it to XNNPACK (``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``) and writes the ExecuTorch program. The batch is fixed to 1 (the
way phone apps run a camera frame; :func:`open_executorch` runs a batch one image at a
time). With calibration images the graph is quantised first: static int8 through PT2E
(``prepare_pt2e``/``convert_pt2e``) with the XNNPACK quantizer (per-channel symmetric int8
weights, per-tensor int8 activations), as ExecuTorch's own MobileNetV2 example does.

The JSON metadata of every deployed file (:func:`~mtvision.export.deploy_metadata`, plus
``output_names`` in the program's output order, ``batch`` and, for int8, a
``quantization`` record) travels inside the ``.pte`` as a constant method,
``mtvision_metadata()`` returning the JSON string (ExecuTorch's ``constant_methods``, the
way it stores a model's constants such as a vocabulary size); :func:`read_pte_metadata`
reads it back through the ExecuTorch runtime.

ExecuTorch is an optional extra (``pip install -e '.[executorch]'``); this module imports
it only inside its functions.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtvision.errors import ExportError
from mtvision.export.deploy import DeployModel, deploy_metadata
from mtvision.utils.atomic_files import atomic_write_bytes

#: The constant method that returns the mtvision JSON metadata.
METADATA_METHOD = "mtvision_metadata"
INSTALL_HINT = "pip install -e '.[executorch]'"


def _require_executorch(path: str) -> None:
    try:
        import executorch.exir  # noqa: F401
        import executorch.runtime  # noqa: F401
    except ImportError:
        raise ExportError(f"{path}: ExecuTorch is not installed ({INSTALL_HINT})") from None


def _contiguous(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with contiguous (NCHW) weights: a model kept in channels-last
    memory format (``MultiTaskModel(channels_last=True)``) makes XNNPACK's layout pass see
    a quantised weight both as NHWC and NCHW and give up."""
    if all(t.is_contiguous() for t in [*model.parameters(), *model.buffers()]):
        return model
    model = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.contiguous()
    return model


def _module_of(node) -> str | None:
    """The innermost module (dotted path) a graph node came from, when recorded."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return path.removeprefix("L['self'].").removeprefix("model.") or None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _capture(deploy: nn.Module, example: Tensor, path: str):
    """``torch.export`` of ``deploy`` on ``example``; an op that does not export is one
    ExportError line."""
    try:
        return torch.export.export(deploy, (example,), strict=False)
    except Exception as error:  # torch.export raises many types (Unsupported, UserError, ...)
        raise ExportError(
            f"{path}: torch.export cannot capture the phone graph for ExecuTorch "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from None


def _quantise(
    deploy: nn.Module, example: Tensor, calibration: Sequence[Tensor], path: str
) -> nn.Module:
    """Static int8 (PT2E, XNNPACK quantizer, per-channel symmetric weights) of the
    channels-last phone graph, calibrated on uint8 (3, H, W) images."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    size = tuple(example.shape[1:3])
    for index, image in enumerate(calibration):
        if image.dtype != torch.uint8 or tuple(image.shape) != (3, *size):
            raise ExportError(
                f"{path}: calibration image {index} is {image.dtype} {tuple(image.shape)}, "
                f"not uint8 (3, {size[0]}, {size[1]}) at the export's input size"
            )
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    captured = _capture(deploy, example, path).module()
    try:
        prepared = prepare_pt2e(captured, quantizer)
        with torch.no_grad():
            for image in calibration:
                prepared(image.permute(1, 2, 0).unsqueeze(0).contiguous())
        return convert_pt2e(prepared)
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(
            f"{path}: int8 quantisation (PT2E, XNNPACK quantizer) failed "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from None


def _unsupported_op(path: str, op: str, node) -> ExportError:
    module = _module_of(node) if node is not None else None
    where = f" in {module}" if module else ""
    return ExportError(
        f"{path}: the op {op}{where} has no ExecuTorch kernel and XNNPACK does not take it; "
        "the model cannot run in ExecuTorch"
    )


def _refuse_non_core_op(error: BaseException, program, path: str) -> None:
    """Lowering refuses an op outside core ATen (``SpecViolationError``): raise the
    one-line error naming it and its module."""
    found = re.search(r"Operator torch\._ops\.(\w+)\.(\w+)\.(\w+) is not in Core ATen", str(error))
    if found is None:
        return
    namespace, op, overload = found.groups()
    target = f"{namespace}.{op}.{overload}"
    node = next(
        (n for n in program.graph.nodes if n.op == "call_function" and str(n.target) == target),
        None,
    )
    raise _unsupported_op(path, f"{namespace}::{op}", node) from None


def _check_kernels(edge_program, path: str) -> None:
    """Refuse ops that XNNPACK did not take and the runtime has no kernel for, naming the
    op and the module (else the file would only fail when a phone loads it)."""
    from executorch.runtime import Runtime

    # The registry names the kernels' out variants (``aten::permute_copy.out``); the
    # edge graph holds the functional ops they replace in to_executorch.
    known = {name.split(".")[0] for name in Runtime.get().operator_registry.operator_names}
    graph = edge_program.exported_program().graph_module.graph
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        schema = getattr(node.target, "_schema", None)
        if schema is None:
            continue  # delegate calls, getitem
        name = schema.name
        if name not in known and name.startswith("aten::"):
            raise _unsupported_op(path, name, node)


def export_deploy_executorch(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] | None,
    *,
    classes: Mapping[str, Sequence[str] | None] | None = None,
    topk: int = 5,
    seg_logits: bool = False,
    source: Mapping[str, str] | None = None,
    class_map: bool = False,
    calibration_images: Sequence[Tensor] | None = None,
) -> str:
    """Write ``model``'s phone graph as an ExecuTorch program (XNNPACK) at ``path``.

    Args:
        model: a MultiTaskModel (any heads); put in eval mode for the capture and restored.
        path: the ``.pte`` file, written atomically once lowered.
        input_size: (H, W) the program is fixed to (a ``.pte`` has static shapes here).
            The batch is fixed to 1: input uint8 (1, H, W, 3) RGB.
        classes, source: recorded in the metadata (as :func:`~mtvision.export.deploy_metadata`).
        topk: recorded as a classification head's top-k (the program returns every
            class's probability; the runtime takes the top-k).
        seg_logits: not used by the phone graph (its segmentation outputs are the
            logits or, with ``class_map``, the uint8 class map).
        class_map: segmentation outputs the argmax ``mask`` (1, H, W) uint8.
        calibration_images: uint8 (3, H, W) images at ``input_size``: the graph is
            quantised to static int8 on them before lowering; None: float32.

    Returns ``path`` as a string.

    Raises:
        ExportError: ExecuTorch not installed (the install hint), no or bad
            ``input_size``, a bad calibration image, an op that ``torch.export`` cannot
            capture or that neither XNNPACK nor ExecuTorch's kernels run (op and module
            named), or any :class:`DeployModel` error.
    """
    path = os.fspath(path)
    _require_executorch(path)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if input_size is None:
        raise ExportError(f"{path}: an ExecuTorch program has a fixed input size; pass (H, W)")
    size = tuple(int(v) for v in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ExportError(f"input_size must be (H, W) positive, got {tuple(input_size)}")
    model = _contiguous(model)
    deploy = DeployModel(model, topk=topk, phone=True, class_map=class_map, channels_last=True)
    example = deploy.example_images(size, batch=1)
    was_training = model.training
    deploy.eval()
    try:
        output_map = deploy.output_map(example)
        metadata = deploy_metadata(deploy, size, output_map, classes=classes, source=source)
        graph: nn.Module = deploy
        if calibration_images is not None:
            if len(calibration_images) == 0:
                raise ExportError(f"{path}: int8 needs at least one calibration image")
            graph = _quantise(deploy, example, calibration_images, path)
            metadata["quantization"] = {
                "scheme": "static int8 (PT2E, XNNPACK quantizer)",
                "weights": "int8 symmetric per-channel",
                "activations": "int8 per-tensor",
                "calibration_images": len(calibration_images),
            }
        program = _capture(graph, example, path)
    finally:
        model.train(was_training)
    metadata["output_names"] = [name for fields in output_map.values() for name in fields.values()]
    metadata["batch"] = 1
    try:
        edge = to_edge_transform_and_lower(
            program,
            partitioner=[XnnpackPartitioner()],
            constant_methods={METADATA_METHOD: json.dumps(metadata)},
        )
    except Exception as error:  # lowering raises plain RuntimeError/AssertionError types
        _refuse_non_core_op(error, program, path)
        raise ExportError(
            f"{path}: ExecuTorch cannot lower the phone graph "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from None
    _check_kernels(edge, path)
    try:
        executorch_program = edge.to_executorch()
    except Exception as error:
        raise ExportError(
            f"{path}: ExecuTorch cannot emit the program "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from None
    atomic_write_bytes(path, executorch_program.buffer)
    return path


def load_program(path: str):
    _require_executorch(path)
    from executorch.runtime import Runtime

    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such ExecuTorch file")
    try:
        return Runtime.get().load_program(path)
    except Exception as error:  # the runtime raises RuntimeError/ValueError with its own text
        raise ExportError(
            f"{path}: not a readable ExecuTorch program ({_first_line(error)})"
        ) from None


def read_pte_metadata(path: str | os.PathLike) -> dict:
    """The mtvision metadata inside an ExecuTorch file (its ``mtvision_metadata()``
    constant method, written by :func:`export_deploy_executorch`).

    Raises:
        ExportError: the file is missing or not an ExecuTorch program, has no mtvision
            metadata, or the metadata is not JSON; names the file.
    """
    path = os.fspath(path)
    program = load_program(path)
    if METADATA_METHOD not in program.method_names:
        raise ExportError(
            f"{path}: no 'mtvision' metadata; export it with tools/export.py --format executorch"
        )
    try:
        (text,) = program.load_method(METADATA_METHOD).execute(())
        return json.loads(text)
    except Exception as error:
        raise ExportError(f"{path}: its mtvision metadata is unreadable ({error})") from None
