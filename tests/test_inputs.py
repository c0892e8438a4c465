"""mtvision.apis.inputs: every kind of image users pass ends as the array its file gives;
anything else is one line naming the input, what it is and what to pass."""

import io

import numpy as np
import pytest
import torch
from inference_toy import textured_image, write_exif_rotated_jpeg
from PIL import Image

from mtvision.apis.inputs import read_image_input, read_image_inputs, split_inputs
from mtvision.data.image_io import load_image
from mtvision.errors import ImageLoadError


@pytest.fixture
def sideways_jpeg(tmp_path):
    """A JPEG stored 50 wide x 30 tall with EXIF orientation 6: upright it is 30 x 50."""
    path = tmp_path / "phone.jpg"
    upright = write_exif_rotated_jpeg(path, textured_image(30, 50))
    assert upright.shape == (50, 30, 3)
    return path, upright


def test_every_form_of_a_file_gives_the_paths_array(sideways_jpeg):
    path, upright = sideways_jpeg
    data = path.read_bytes()
    forms = {
        "str": str(path),
        "Path": path,
        "PIL": Image.open(path),
        "PIL RGB": Image.open(path).convert("RGB"),
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "BytesIO": io.BytesIO(data),
        "file": open(path, "rb"),  # noqa: SIM115 - closed below
        "array": upright.copy(),
        "tensor": torch.from_numpy(upright.copy()).permute(2, 0, 1),
    }
    try:
        for name, form in forms.items():
            loaded = read_image_input(form, 3)
            assert loaded.image.dtype == np.uint8 and loaded.image.flags.c_contiguous, name
            np.testing.assert_array_equal(loaded.image, upright, err_msg=name)
    finally:
        forms["file"].close()
    assert read_image_input(str(path)).source == str(path)
    assert read_image_input(Image.open(path)).source == str(path)  # PIL keeps the file name
    with open(path, "rb") as f:
        assert read_image_input(f).source == str(path)
    assert read_image_input(data, 3).source == "<input 3>"


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_png_modes_become_rgb_as_their_files_do(tmp_path, mode):
    rgb = textured_image(6, 9, seed=2)
    path = tmp_path / f"{mode}.png"
    image = Image.fromarray(rgb)
    image = image.quantize(colors=8) if mode == "P" else image.convert(mode)
    image.save(path)
    from_file = load_image(path)
    with Image.open(path) as opened:
        assert opened.mode == mode
        np.testing.assert_array_equal(read_image_input(opened).image, from_file)
    np.testing.assert_array_equal(read_image_input(path.read_bytes()).image, from_file)
    if mode == "RGBA":
        np.testing.assert_array_equal(from_file, rgb)


def test_one_input_or_a_list(sideways_jpeg):
    path, upright = sideways_jpeg
    data = path.read_bytes()
    assert split_inputs(data) == ([data], True)  # bytes are one image, not a list of ints
    pil = Image.open(path)
    assert split_inputs(pil) == ([pil], True)
    loaded, single = read_image_inputs([str(path), pil, data, io.BytesIO(data), upright])
    assert not single and len(loaded) == 5
    for item in loaded:
        np.testing.assert_array_equal(item.image, upright)
    assert [item.source for item in loaded][2:] == ["<input 2>", "<input 3>", "<input 4>"]
    loaded, single = read_image_inputs(p for p in [path, path])  # an iterator, e.g. Path.glob
    assert not single and len(loaded) == 2
    assert read_image_inputs(()) == ([], False)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (np.zeros((4, 5)), ValueError, r"^input 1 is a 2-D float64 array \(4, 5\); pass an \(H, "
         r"W, 3\) uint8 RGB array; a float image in 0\.\.1 as \(image \* 255\)"),
        (np.zeros((4, 5), np.uint8), ValueError, r"input 1 is a 2-D uint8 array.*np\.stack"),
        (np.zeros((3, 4, 5), np.uint8), ValueError, r"channels-first.*transpose\(1, 2, 0\)"),
        (np.zeros((4, 5, 4), np.uint8), ValueError, r"an RGBA image as image\[\.\.\., :3\]"),
        (np.zeros((0, 5, 3), np.uint8), ValueError, r"input 1 is an empty image"),
        (torch.zeros(3, 4, 5), ValueError, r"input 1 is a 3-D float32 tensor \(3, 4, 5\); pass "
         r"a \(3, H, W\) uint8 RGB tensor.*\(t \* 255\)\.round\(\)\.to\(torch\.uint8\)"),
        (torch.zeros(2, 3, 4, 5, dtype=torch.uint8), ValueError, r"a batch; .*list\(batch\)"),
        ([1, 2, 3], TypeError, r"^input 1 is a list; pass a file path, an \(H, W, 3\) uint8 RGB "
         r"numpy array, a PIL image, encoded image bytes, a binary file object or a \(3, H, W\) "
         r"uint8 torch tensor, or a list of these$"),
        (None, TypeError, r"^input 1 is None; pass a file path"),
        (7, TypeError, r"^input 1 is an int; pass"),
        (io.StringIO("text"), TypeError, r"input 1 is a file object whose read\(\) gives str.*"
         r"open\(path, 'rb'\)"),
    ],
    ids=["float64-2d", "gray", "chw", "rgba", "empty", "float-tensor", "batch", "list", "none",
         "int", "text-file"],
)  # fmt: skip
def test_wrong_inputs_get_one_line(value, error, message):
    with pytest.raises(error, match=message) as info:
        read_image_inputs([np.zeros((2, 2, 3), np.uint8), value])
    assert "\n" not in str(info.value)


def test_wrong_container_and_undecodable_bytes():
    with pytest.raises(TypeError, match=r"^the input is a dict; pass a file path"):
        split_inputs({"a": 1})
    with pytest.raises(ImageLoadError, match=r"'<input 0>': not a decodable image"):
        read_image_inputs(b"this is no image" * 4)
    with pytest.raises(ImageLoadError, match=r"'<input 0>': the file is empty"):
        read_image_inputs(io.BytesIO(b""))
