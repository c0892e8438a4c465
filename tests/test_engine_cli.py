"""run_cli: a user-input error ends as one ``error:`` line with its reason, exit status 2,
also when it was raised inside a DataLoader worker process."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mtvision.data.image_io import load_image
from mtvision.engine.cli import one_line_message, run_cli
from mtvision.errors import CheckpointError


class _Images(Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return torch.from_numpy(load_image(self.paths[index]))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_decoder_refusal_in_a_worker_is_one_line_with_its_reason(tmp_path, capsys, num_workers):
    from test_image_io import black_png

    path = black_png(tmp_path / "huge.png", 32800, 32800, 400)
    loader = DataLoader(_Images([str(path)]), num_workers=num_workers)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: next(iter(loader)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot load image '{path}': ")
    assert "32800x32800" in err and "OPENCV_IO_MAX_IMAGE_PIXELS" in err
    assert "Traceback" not in err and "DataLoader worker" not in err


def test_multi_line_messages_become_one_line():
    error = CheckpointError("a.pth: does not fit\n  missing keys: x\n  unexpected keys: y")
    assert one_line_message(error) == "a.pth: does not fit missing keys: x unexpected keys: y"
