"""Errors about the user's files and settings, in one place.

Each message names the file (or config key) and the problem. The command-line
tools print these as one ``error:`` line and exit with status 2
(:data:`USER_INPUT_ERRORS`, used by ``mtvision.engine.cli``); any other
exception is a bug and keeps its traceback.

They live here, below every package, so that ``data/``, ``evaluation/``,
``export/`` and ``engine/`` can raise and catch them without importing each
other.
"""

from __future__ import annotations

__all__ = [
    "USER_INPUT_ERRORS",
    "AnnotationError",
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "ExportError",
    "ImageLoadError",
    "MaskLoadError",
    "OutputError",
    "ScalarLogError",
]


class AnnotationError(ValueError):
    """An annotation or list file is malformed or does not fit the dataset.

    The message names the file and, where there is one, the annotation id or
    object index.
    """


class ImageLoadError(OSError):
    """An image file is missing, empty, corrupt, truncated or has an unsupported format.

    The message always starts with ``cannot load image '<path>'`` and ends
    with the problem.
    """


class MaskLoadError(ImageLoadError):
    """A mask file is missing, unreadable, not an index PNG, holds values that
    are no class, or does not match its image's size.

    An :class:`ImageLoadError`, so datasets with ``on_bad_image="skip"`` skip
    the sample and the command-line tools print the message without a
    traceback. The message starts with ``cannot load mask '<path>'``.
    """


class ScalarLogError(ValueError):
    """A training log (mmengine's ``vis_data/scalars.json``) that cannot be read;
    the message names the file and the line."""


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint file or weights that cannot be used; the message names the source.

    Raised by every weight loader (:mod:`mtvision.utils.state_dict`) for weights
    that do not fit the model, and by the checkpoint reader for unreadable or
    unsafe files. Also a ``ValueError``: a state dict passed in Python that
    does not fit is a wrong argument value, as torch's own loaders treat it.
    """


class ConfigError(ValueError):
    """A config that cannot be right; the message names the file and the key."""


class ConversionError(ValueError):
    """A weight file (e.g. ``.tflite``) that cannot be read, or whose graph does not
    fit the model it is converted into; the message names the file, the op or layer,
    and the problem."""


class ExportError(ValueError):
    """A model that cannot be exported as asked, or an exported (ONNX) file that cannot
    be used, or does not fit the config it is used with; the message names the file (or
    head) and the problem, e.g. both input sizes or both class counts."""


class OutputError(OSError):
    """An output file or folder that cannot be written: a ``--out`` that is an existing
    folder, an ``--out-dir`` that is a file, a parent folder that cannot be created,
    no permission, a full disk. The message names the path (and the option) and the
    problem; a file that was there before is left as it was
    (:mod:`mtvision.utils.atomic_files`)."""


#: What the command-line tools report as one line instead of a traceback.
USER_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    AnnotationError,
    ConfigError,
    CheckpointError,
    ConversionError,
    ExportError,
    ImageLoadError,
    OutputError,
    ScalarLogError,
    FileNotFoundError,
)
