"""Loading checkpoints safely, and checking that they fit the model.

A checkpoint is untrusted input: unpickling it may run arbitrary code, so it is
always read with ``torch.load(..., weights_only=True)``. A checkpoint written by
mmengine's ``Runner.save_checkpoint`` holds more than tensors, though: the
message hub (``log_scalars``) stores :class:`HistoryBuffer` objects with numpy
arrays inside, and ``runtime_info`` holds numpy scalars such as ``eta``. The
globals needed for exactly those, and nothing else, are allowed while our
loader runs (:data:`CHECKPOINT_SAFE_GLOBALS`); anything else is refused with an
error that names the file and the global.

Importing this module installs :func:`load_from_local` as mmengine's loader for
local paths (``CheckpointLoader`` prefix ``''``), so ``load_from``, ``resume``
and ``init_cfg=dict(type='Pretrained', ...)`` all go through it;
:func:`load_published` for ``mtvision://NAME`` (published weights by name); and
:class:`PretrainedInit` as mmengine's ``Pretrained`` initializer, so
``init_cfg`` accepts and refuses what every other weight loader does
(:mod:`mtvision.utils.state_dict`).
"""

import logging
import os.path as osp
import pickle
import re
import zipfile
from collections.abc import Mapping

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model.weight_init import PretrainedInit as MMEnginePretrainedInit
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner import CheckpointLoader
from torch import nn

from mtvision.backbones.weights import pretrained_weights as backbone_pretrained_weights
from mtvision.convert.published_weights import SCHEME as PUBLISHED_SCHEME
from mtvision.convert.published_weights import published_checkpoint
from mtvision.errors import CheckpointError
from mtvision.utils.state_dict import check_state_dict_fits as check_state_dict_fits_shared
from mtvision.utils.state_dict import summarize_keys, unwrap_state_dict

try:
    from numpy._core import multiarray  # numpy >= 2
except ImportError:  # numpy 1.x
    from numpy.core import multiarray


_HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


def _history_buffer_statistic(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling a checkpoint.

    ``HistoryBuffer.__getstate__`` pickles its ``statistics_methods`` dict,
    whose values are the functions ``HistoryBuffer.min`` etc. ``torch.save``
    uses pickle protocol 2, which can only name a function nested in a class
    as ``getattr(HistoryBuffer, 'min')``. A real ``getattr`` would let a
    crafted file reach any attribute of any allowed object, so only those
    four look-ups are answered.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"getattr({owner!r}, {name!r}) is not allowed; only "
        f"HistoryBuffer.{{{','.join(_HISTORY_BUFFER_STATISTICS)}}} may be looked up"
    )


# Plain numeric dtypes. Their classes must be allowed because unpickling a
# dtype ends with BUILD on an instance of e.g. numpy.dtypes.Float64DType, which
# torch only permits for allow-listed types. Object, string and void dtypes are
# left out: an object array's payload is arbitrary pickled Python objects.
_NUMERIC_DTYPE_CLASSES = [
    type(np.dtype(scalar_type))
    for scalar_type in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
    )
]

#: Everything an mmengine checkpoint needs beyond torch's own weights-only set
#: (tensors, storages, ``OrderedDict``, ``Counter``, ...): ``HistoryBuffer``
#: objects from the message hub, the numpy arrays inside them (``ndarray``,
#: ``_reconstruct``, ``dtype`` and dtype classes), numpy scalars (``scalar``),
#: and the restricted ``getattr`` explained in :func:`_history_buffer_statistic`.
#: numpy 1.x wrote ``numpy.core.multiarray.*``, numpy 2 ``numpy._core.multiarray.*``.
CHECKPOINT_SAFE_GLOBALS = [
    HistoryBuffer,
    np.ndarray,
    np.dtype,
    *_NUMERIC_DTYPE_CLASSES,
    (multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
    (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    (multiarray.scalar, "numpy._core.multiarray.scalar"),
    (multiarray.scalar, "numpy.core.multiarray.scalar"),
    (_history_buffer_statistic, "builtins.getattr"),
]

_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+?)(?: was not| whose|:|$)", re.MULTILINE)


def _unpickler_complaint(message: str) -> str:
    """The line of torch's weights-only error that says what was refused."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Check the documentation")]
    return lines[-1].rpartition("WeightsUnpickler error:")[2].strip() if lines else message


#: (leading bytes, offset, what such a file is) of formats users pass as checkpoints.
_FOREIGN_SIGNATURES = (
    (b"TFL3", 4, "a TensorFlow Lite file"),
    (b"\x89HDF", 0, "an HDF5 (Keras) file"),
    (b"\x89PNG", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"\x93NUMPY", 0, "a NumPy .npy file"),
)


def _first_sentence(error: BaseException) -> str:
    """torch's error text up to its first sentence (its hints run for lines)."""
    text = " ".join(str(error).split())
    return text.split(". ")[0].rstrip(".") or type(error).__name__


def _foreign_format(filename: str) -> str | None:
    """What ``filename`` is, when it is recognisably not a torch checkpoint (else None)."""
    try:
        with open(filename, "rb") as file:
            head = file.read(16)
    except OSError as error:
        return f"the file cannot be opened ({error.strerror or error})"
    if not head:
        return "the file is empty"
    for signature, offset, what in _FOREIGN_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            hint = "; convert it with tools/convert_weights.py" if "Lite" in what else ""
            return f"it is {what}, not a checkpoint{hint}"
    if filename.lower().endswith(".onnx"):
        return "it is an ONNX file, not a checkpoint; run it with --backend onnxruntime"
    if len(head) >= 9 and head[8:9] == b"{" and filename.lower().endswith(".safetensors"):
        return "it is a safetensors file, not a torch checkpoint"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(filename) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None  # a zip cut short: torch's own message says so
        if not any(name.endswith("data.pkl") for name in names):
            return "it is a zip archive without data.pkl, not a checkpoint torch.save wrote"
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head):
        return "it is a text file, not a checkpoint"
    return None


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load(filename, weights_only=True)`` with mmengine's globals allowed.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        CheckpointError: one line naming the file: a folder, an empty, truncated or
            corrupt file, a file of another format (TFLite, ONNX, text, a zip that
            torch did not write, ...), or one that needs a Python global outside
            :data:`CHECKPOINT_SAFE_GLOBALS` (named in the message).
    """
    filename = osp.expanduser(str(filename))
    if osp.isdir(filename):
        raise CheckpointError(f"{filename} is a folder, not a checkpoint file")
    if not osp.isfile(filename):
        raise FileNotFoundError(f"checkpoint file not found: {filename}")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except (MemoryError, RecursionError):
        raise
    except Exception as error:
        foreign = _foreign_format(filename)
        if foreign is not None:
            raise CheckpointError(f"{filename}: cannot read the checkpoint, {foreign}") from error
        _raise_unreadable(filename, error)


def _raise_unreadable(filename: str, error: Exception):
    """The :class:`CheckpointError` for a file torch cannot load (not a foreign format)."""
    if isinstance(error, pickle.UnpicklingError):
        refused = _REFUSED_GLOBAL.search(str(error))
        if refused is None:
            raise CheckpointError(
                f"{filename}: refused to unpickle the checkpoint for safety "
                f"(loaded with weights_only=True): {_unpickler_complaint(str(error))}"
            ) from error
        raise CheckpointError(
            f"{filename}: the checkpoint needs the Python global '{refused.group(1)}', "
            "which is not on mtvision's checkpoint allow-list; it is refused for safety "
            "because unpickling arbitrary globals can execute code"
        ) from error
    raise CheckpointError(
        f"{filename}: cannot read the checkpoint, the file is truncated or corrupt "
        f"({type(error).__name__}: {_first_sentence(error)})"
    ) from error


@CheckpointLoader.register_scheme(prefixes="", force=True)
def load_from_local(filename, map_location):
    """mmengine's local-path checkpoint loader, with weights-only unpickling."""
    return load_checkpoint_file(filename, map_location=map_location)


@CheckpointLoader.register_scheme(prefixes=PUBLISHED_SCHEME, force=True)
def load_published(filename, map_location):
    """``mtvision://NAME``: Google's published weights by name, fetched, checked and
    converted once into torch's hub cache (:func:`published_checkpoint`), then read
    as a local checkpoint."""
    return load_checkpoint_file(published_checkpoint(filename), map_location=map_location)


def check_state_dict_fits(
    model: nn.Module, state_dict: Mapping, filename: str, strict: bool = True
) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` loads into ``model``.

    The one report every weight loader gives
    (:func:`mtvision.utils.state_dict.check_state_dict_fits`): strict by
    default; checked on every rank, so that in distributed runs no rank goes
    on alone into a collective and hangs.
    """
    check_state_dict_fits_shared(model, state_dict, filename, strict=strict)


@WEIGHT_INITIALIZERS.register_module(name="Pretrained", force=True)
class PretrainedInit(MMEnginePretrainedInit):
    """``init_cfg=dict(type="Pretrained", checkpoint=..., prefix=None)``, with the
    inputs every mtvision loader accepts (:mod:`mtvision.utils.state_dict`).

    mmengine's own loads non-strictly and only logs what did not match, so a
    checkpoint of another model (or one whose weights sit under ``model``)
    leaves the module silently random. Here the checkpoint is unwrapped the
    same way as ``load_from``; shape mismatches, and weights that match not a
    single key of the module, are a :class:`CheckpointError` naming the file.

    Which keys: ``prefix`` (e.g. ``"backbone."``) selects the keys of one
    sub-module. Without it, a backbone whose weight formats are known
    (:func:`mtvision.backbones.weights.pretrained_weights`: mtvision checkpoints,
    converted TFLite files, torchvision state dicts) takes its own part; any other
    module takes the keys as they are (a whole-model checkpoint on the whole model).

    ``checkpoint`` is a path, or ``mtvision://NAME`` for Google's published
    weights by name (:mod:`mtvision.convert.published_weights`: fetched once into
    torch's hub cache, sha256-checked, converted).

    One log line says what was loaded and what was not: the layout, how many of
    the module's tensors were loaded, those left as initialised and the file's
    keys not loaded, grouped by prefix with counts. Warnings the module raises
    (folded BatchNorm without ``norm_eval``) are logged as warnings. A checkpoint
    whose ``meta`` describes its preprocessing (converted files) leaves it on the
    module as ``pretrained_preprocessing``; :class:`~mtvision.models.MultiTaskModel`
    compares it with its data preprocessor.
    """

    def __call__(self, module: nn.Module) -> None:
        source = str(self.checkpoint)
        checkpoint = CheckpointLoader.load_checkpoint(source, map_location=self.map_location)
        meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        state_dict = unwrap_state_dict(checkpoint, source)
        skipped: list[str] = []
        if self.prefix:
            prefix = self.prefix if self.prefix.endswith(".") else f"{self.prefix}."
            selected = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if not selected:
                raise CheckpointError(
                    f"{source}: no key starts with the prefix {prefix!r} (init_cfg prefix); "
                    f"keys start with {sorted({k.split('.')[0] + '.' for k in state_dict})[:10]}"
                )
            skipped = [k for k in state_dict if not k.startswith(prefix)]
            state_dict = selected
            layout = f"its keys under {prefix!r}"
            source = f"{source} (prefix {prefix!r})"
            warnings: list[str] = []
            preprocessing = meta.get("preprocessing")
        elif (weights := backbone_pretrained_weights(module, state_dict, source, meta)) is not None:
            state_dict, layout, skipped = weights.state_dict, weights.layout, weights.skipped
            warnings, preprocessing = weights.warnings, weights.preprocessing
        else:
            layout = "its keys as they are"
            warnings = []
            preprocessing = meta.get("preprocessing")
        fit = check_state_dict_fits_shared(module, state_dict, source, strict=False)
        module.load_state_dict(state_dict, strict=False)
        if isinstance(preprocessing, Mapping):
            module.pretrained_preprocessing = dict(preprocessing)
        total = len(module.state_dict())
        print_log(
            f"load {type(module).__name__} from {source} ({layout}): {len(fit.matched)} of "
            f"{total} tensors loaded; left as initialised: {summarize_keys(fit.missing)}; in "
            f"the file, not loaded: {summarize_keys([*skipped, *fit.unexpected])}",
            logger="current",
        )
        for warning in warnings:
            print_log(warning, logger="current", level=logging.WARNING)
        if hasattr(module, "_params_init_info"):
            update_init_info(module, init_info=self._get_init_info())
