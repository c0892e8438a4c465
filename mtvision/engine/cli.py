"""Running the command-line tools: bad input ends with one clear line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mtvision.data.image_io import ImageLoadError
from mtvision.engine.checkpoint import CheckpointError
from mtvision.engine.config import ConfigError

# Errors about the user's files and settings; their messages name the file or
# key and the problem. Anything else is a bug and keeps its traceback.
USER_INPUT_ERRORS = (ConfigError, CheckpointError, ImageLoadError, FileNotFoundError)


def run_cli(main: Callable[[], object]) -> None:
    """Call ``main()``; on a user-input error print ``error: <message>`` and exit 2."""
    try:
        main()
    except USER_INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
