"""The ExecuTorch runtime behind :class:`~mtvision.export.runtimes.DeployedSession`:
a ``.pte`` written by :func:`~mtvision.export.executorch_export.export_deploy_executorch`
run through ``executorch.runtime`` (XNNPACK delegate) on uint8 (N, H, W, 3) images.

Registered as the ``executorch`` runtime for ``.pte`` files in
:mod:`mtvision.export.runtimes`; ExecuTorch is the optional extra
``pip install -e '.[executorch]'``.
"""

from __future__ import annotations

import numpy as np
import torch

from mtvision.errors import ExportError
from mtvision.export.executorch_export import load_program, read_pte_metadata


def open_executorch(path: str, threads: int | None):
    """Open a ``.pte`` for :class:`~mtvision.export.runtimes.DeployedSession`: returns
    ``(run, output_names)``, ``run(images uint8 (N, H, W, 3)) -> list of arrays`` (the
    program takes one image; a batch runs image by image and is stacked).

    ``threads`` resets ExecuTorch's (process-wide) XNNPACK thread pool.

    Raises:
        ExportError: ExecuTorch not installed (the install hint), a missing or unreadable
            file, no mtvision metadata, or a program without ``forward``.
    """
    metadata = read_pte_metadata(path)
    program = load_program(path)
    if threads is not None:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(int(threads))
    try:
        forward = program.load_method("forward")
    except Exception as error:
        raise ExportError(f"{path}: ExecuTorch cannot load its forward ({error})") from None
    names = list(metadata["output_names"])

    def run(images: np.ndarray) -> list[np.ndarray]:
        per_image = [
            [t.numpy().copy() for t in forward.execute((torch.from_numpy(images[i : i + 1]),))]
            for i in range(len(images))
        ]
        return [np.concatenate(parts) for parts in zip(*per_image, strict=True)]

    return run, names
