"""ONNX export of mtvision models, checked with ``onnx.checker`` and compared with onnxruntime.

What is exported is a model's tensor forward: ``model(x)`` on an (N, 3, H, W)
input. A model returning one tensor has one output, ``logits``; a backbone
returns a dict of taps, which become one named output per tap in the dict's
order (the backbone's ``out_features`` order); a
:class:`~mtvision.models.MultiTaskModel` returns ``{head: {name: tensor}}``,
exported as one output per head output named ``"<head>.<name>"`` (the
classifier's ``classification.cls_logits``, (N, K)): the heads' raw outputs,
before post-processing.

Preprocessing stays outside the graph unless the model is wrapped in
:class:`Uint8Input`, which bakes the cast and the ImageNet mean/std
normalisation of the model's data preprocessor into the graph so that the
ONNX model takes uint8 RGB images directly.

The exporter is torch's TorchScript-based one (``dynamo=False``): the
torch.export-based default needs the ``onnxscript`` package, which mtvision
does not depend on, and the traced graph of these convolutional models is the
same either way.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from mtvision.utils.atomic_files import atomic_write_bytes

INPUT_NAME = "input"
LOGITS_NAME = "logits"
BATCH_AXIS_NAME = "batch"


class Uint8Input(nn.Module):
    """``model`` behind its data preprocessor's normalisation, for uint8 NCHW RGB input.

    ``forward(images)`` with images (N, 3, H, W) uint8 RGB returns
    ``model((images.float() - mean) / std)``, the same as
    ``model(model.data_preprocessor(...)["inputs"])`` for a stacked batch.
    Resizing is not part of it: images must already have the model's input size.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def from_data_preprocessor(cls, model: nn.Module) -> Uint8Input:
        """Wrap ``model`` with the mean/std of ``model.data_preprocessor`` (mmengine's
        ``ImgDataPreprocessor``).

        Raises ``ValueError`` when the preprocessor does not normalise or converts
        channel order, which this wrapper does not reproduce.
        """
        preprocessor = getattr(model, "data_preprocessor", None)
        mean = getattr(preprocessor, "mean", None)
        std = getattr(preprocessor, "std", None)
        if mean is None or std is None:
            raise ValueError(
                f"{type(model).__name__} has no normalising data_preprocessor "
                "(with mean and std) to bake into the graph"
            )
        if getattr(preprocessor, "_channel_conversion", False):
            raise ValueError(
                "the data_preprocessor converts BGR/RGB channel order; "
                "export without preprocessing and convert before the ONNX model"
            )
        return cls(model, mean.flatten().tolist(), std.flatten().tolist())

    def forward(self, images: Tensor):
        return self.model((images.float() - self.mean) / self.std)


class _TensorOutputs(nn.Module):
    """Returns a dict output as a tuple in ``output_names`` order (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module, output_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.output_names = tuple(output_names)

    def forward(self, x: Tensor):
        names, tensors = flatten_outputs(self.model(x))
        if names != list(self.output_names):
            raise RuntimeError(f"the model's outputs changed from {self.output_names} to {names}")
        return tuple(tensors)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm running statistics, no dropout) for the duration, then restored."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def flatten_outputs(outputs) -> tuple[list[str], list[Tensor]]:
    """Output names and tensors of a forward: one tensor is ``logits``; a dict keeps its
    keys; a dict of dicts of tensors (a MultiTaskModel's heads) gives ``"<head>.<name>"``.

    Raises ``TypeError`` for anything else.
    """
    if isinstance(outputs, Tensor):
        return [LOGITS_NAME], [outputs]
    names, tensors = [], []
    if isinstance(outputs, dict):
        for key, value in outputs.items():
            if isinstance(value, Tensor):
                names.append(key)
                tensors.append(value)
            elif isinstance(value, dict) and all(isinstance(v, Tensor) for v in value.values()):
                names += [f"{key}.{name}" for name in value]
                tensors += list(value.values())
            else:
                break
        else:
            return names, tensors
    raise TypeError(
        "export needs a forward returning a Tensor, a dict of Tensors or a dict of such "
        f"dicts, got {type(outputs).__name__}"
    )


def _torch_outputs(model: nn.Module, inputs: Tensor) -> tuple[list[str], list[Tensor]]:
    with _eval_mode(model), torch.no_grad():
        return flatten_outputs(model(inputs))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    opset: int = 17,
    dynamic_batch: bool = True,
    input_dtype: torch.dtype = torch.float32,
) -> str:
    """Export ``model``'s forward on one (N, C, H, W) input to an ONNX file at ``path``.

    The model is traced in eval mode (its mode is restored afterwards). The graph
    has one input, ``input`` (``input_dtype``, ``input_shape`` with the batch axis
    named ``batch`` when ``dynamic_batch``), and the outputs named by
    :func:`flatten_outputs`: ``logits`` for a model returning one tensor, one
    output per key for a dict (a backbone's taps, in ``out_features`` order),
    ``"<head>.<name>"`` for a MultiTaskModel.

    The model is checked with ``onnx.checker.check_model(full_check=True)``
    before it is written; the write is atomic (temporary file, fsync,
    ``os.replace``), so ``path`` never holds a partial or unchecked model.
    Returns ``path`` as a string.
    """
    path = os.fspath(path)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    if input_dtype.is_floating_point:
        example = torch.randn(*input_shape, dtype=input_dtype)
    else:
        example = torch.randint(0, 256, tuple(input_shape), dtype=input_dtype)
    output_names, _ = _torch_outputs(model, example)
    wrapper = _TensorOutputs(model, output_names)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: BATCH_AXIS_NAME} for name in [INPUT_NAME, *output_names]}

    with _eval_mode(model):
        data = trace_to_onnx(wrapper, example, opset, [INPUT_NAME], output_names, dynamic_axes)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    atomic_write_bytes(path, data)
    return path


def trace_to_onnx(
    module: nn.Module,
    example: Tensor,
    opset: int,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict | None,
) -> bytes:
    """The ONNX bytes of ``module(example)`` from torch's TorchScript-based exporter
    (``dynamo=False``, see the module docstring), with constant folding and without
    the exporter's deprecation and tracer warnings (the traces are checked by
    comparison with onnxruntime instead)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        warnings.filterwarnings("ignore", message=".*Exporting aten::index operator.*")
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session for ``path``; ``threads`` sets its intra-op threads."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(
        os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def check_onnx_matches(
    model: nn.Module, path: str | os.PathLike, inputs: Tensor | np.ndarray
) -> float:
    """Run ``inputs`` through ``model`` (eval mode) and the ONNX file; return the max abs diff.

    Outputs are compared by name. Raises ``ValueError`` when the names or
    shapes differ, since no difference is meaningful then.
    """
    inputs = torch.as_tensor(inputs)
    names, expected = _torch_outputs(model, inputs)
    session = onnx_session(path)
    onnx_names = [output.name for output in session.get_outputs()]
    if onnx_names != names:
        raise ValueError(f"{path}: ONNX outputs {onnx_names}, torch outputs {names}")
    actual = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    max_diff = 0.0
    for name, want, got in zip(names, expected, actual, strict=True):
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(
                f"{path}: output {name!r} has shape {tuple(got.shape)} in ONNX, "
                f"{tuple(want.shape)} in torch"
            )
        diff = np.abs(got.astype(np.float64) - want.double().numpy())
        max_diff = max(max_diff, float(diff.max(initial=0.0)))
    return max_diff
