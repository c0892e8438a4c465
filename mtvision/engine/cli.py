"""Shared by the command-line tools: bad input ends with one clear line, not a
traceback, and the common ``--cfg-options`` argument."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mmengine.config import DictAction

from mtvision.errors import USER_INPUT_ERRORS


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
