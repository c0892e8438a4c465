"""Shared by the command-line tools: bad input ends with one clear line, not a
traceback, and the common ``--cfg-options`` argument."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from mmengine.config import DictAction

from mtvision.engine.config_values import check_option_text
from mtvision.errors import USER_INPUT_ERRORS


def run_cli(main: Callable[[], object]) -> None:
    """Call ``main()``; on a user-input error print ``error: <message>`` (one line) and exit 2."""
    try:
        main()
    except USER_INPUT_ERRORS as error:
        print(f"error: {one_line_message(error)}", file=sys.stderr)
        sys.exit(2)


def one_line_message(error: BaseException) -> str:
    """The error's own message on one line.

    An error raised in a ``DataLoader`` worker reaches the main process as the
    same type whose message is torch's "Caught ... in DataLoader worker process
    N. Original Traceback ..." text; the original message is its end, after
    the exception's name. Line breaks inside a message become spaces.
    """
    message = str(error)
    if "Original Traceback (most recent call last):" in message:
        kind = type(error)
        names = {kind.__qualname__, f"{kind.__module__}.{kind.__qualname__}"}
        pattern = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
        found = list(re.finditer(rf"^(?:{pattern}): ", message, flags=re.MULTILINE))
        if found:
            message = message[found[-1].end() :]
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``KEY=VALUE`` words into a dict, values parsed as
    int, float, bool, ``None``, lists and tuples) that first refuses a word without
    ``=`` or with unbalanced brackets, as a :class:`~mtvision.errors.ConfigError`
    naming the word (``DictAction`` would raise a bare ``ValueError`` or
    ``AssertionError``, or keep ``[0.5`` as text)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for text in values or ():
            check_option_text(text)
        super().__call__(parser, namespace, values, option_string)


def add_cfg_options_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """Add mmdet's ``--cfg-options KEY=VALUE ...`` (config overrides) to ``parser``.

    A malformed word raises :class:`~mtvision.errors.ConfigError` while the
    arguments are parsed; :func:`~mtvision.engine.config.load_config` checks the
    keys and values against the config.
    """
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=CfgOptionsAction,
        metavar="KEY=VALUE",
        help=f"override config entries, e.g. {example}",
    )
