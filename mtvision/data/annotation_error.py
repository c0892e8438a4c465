"""The error raised for malformed annotation files."""


class AnnotationError(ValueError):
    """An annotation or list file is malformed or does not fit the dataset.

    The message names the file and, where there is one, the annotation id or
    object index. The command-line tools report it as one ``error:`` line
    (``mtvision.engine.cli``) instead of a traceback.
    """
