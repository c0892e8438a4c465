"""Shared by the command-line tools: bad input ends with one clear line, not a
traceback, and the common ``--cfg-options`` argument."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mmengine.config import DictAction

from mtvision.data.annotation_error import AnnotationError
from mtvision.data.image_io import ImageLoadError
from mtvision.engine.checkpoint import CheckpointError
from mtvision.engine.config import ConfigError

# Errors about the user's files and settings; their messages name the file or
# key and the problem. Anything else is a bug and keeps its traceback.
USER_INPUT_ERRORS = (
    AnnotationError,
    ConfigError,
    CheckpointError,
    ImageLoadError,
    FileNotFoundError,
)


def run_cli(main: Callable[[], object]) -> None:
    """Call ``main()``; on a user-input error print ``error: <message>`` and exit 2."""
    try:
        main()
    except USER_INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def add_cfg_options_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """Add mmdet's ``--cfg-options KEY=VALUE ...`` (config overrides) to ``parser``."""
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        metavar="KEY=VALUE",
        help=f"override config entries, e.g. {example}",
    )
