"""Fixtures shared by the test files: messages logged through mmengine's logger, one
intra-op thread for tiny networks, the real-data folder."""

import logging

import pytest
import torch
from mmengine.logging import MMLogger


class _Recorder(logging.Handler):
    def __init__(self, level: int):
        super().__init__(level=level)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _record(level: int):
    logger = MMLogger.get_current_instance()
    recorder = _Recorder(level)
    logger.addHandler(recorder)
    yield recorder.messages
    logger.removeHandler(recorder)


@pytest.fixture
def logged_warnings():
    """Texts of the warnings mmengine's current logger emits during the test."""
    yield from _record(logging.WARNING)


@pytest.fixture
def logged_messages():
    """Texts of the INFO (and higher) messages mmengine's current logger emits during the test."""
    yield from _record(logging.INFO)


REALDATA_ENV = "MTVISION_REALDATA"


@pytest.fixture(scope="session")
def realdata():
    """The real photos, annotations and weights of ``../shared/realdata`` (see its README).

    The folder sits beside the project (``<repo>/../shared/realdata``); the
    environment variable ``MTVISION_REALDATA`` points elsewhere. Tests that
    need it skip when it is absent: it is not redistributable, so it is never
    part of the repository.
    """
    import os
    from pathlib import Path

    path = Path(
        os.environ.get(REALDATA_ENV)
        or Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
    )
    if not path.is_dir():
        pytest.skip("../shared/realdata not present")
    return path


@pytest.fixture
def one_intra_op_thread():
    """torch runs on one intra-op thread during the test, then as before.

    Tiny convolutions: with two threads on a busy two-core machine each op waits for
    the other thread's time slice. Measured for the SSDLite overfit test: 80-190 s
    with two threads, 3-5 s with one. Use with
    ``pytestmark = pytest.mark.usefixtures("one_intra_op_thread")``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """A tiny synthetic shapes set (12 train / 6 val images of 64-96 px) in the COCO,
    ImageNet and VOC layouts, shared read-only by the session's tests."""
    from mtvision.synthetic.shapes import generate_shapes_dataset

    root = tmp_path_factory.mktemp("tiny_shapes")
    generate_shapes_dataset(root, seed=0, num_train=12, num_val=6, min_size=64, max_size=96)
    return root
