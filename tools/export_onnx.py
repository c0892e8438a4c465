"""Export a trained checkpoint to ONNX: ``tools/export.py`` with ``--format onnx``.

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx [options of tools/export.py]

Kept for the commands and scripts that name it; every option and check is
``tools/export.py``'s (see its docstring and ``docs/export.md``).
"""

from __future__ import annotations

import importlib.util
import os

from mtvision.engine.cli import run_cli


def _export_tool():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export.py")
    spec = importlib.util.spec_from_file_location("mtvision_tools_export", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    """``tools/export.py``'s ``main`` with ``--format onnx``."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    return _export_tool().main([*argv, "--format", "onnx"])


if __name__ == "__main__":
    run_cli(main)
