"""load_image: every supported file kind ends as HWC uint8 RGB; every failure names the file."""

import cv2
import numpy as np
import pytest

from mtvision.data import image_io
from mtvision.data.image_io import ImageLoadError, load_image


def write_rgb(path, rgb, *params):
    """Write an RGB array with OpenCV (which expects BGR)."""
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    return path


def smooth_rgb(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 2)


def test_png_loads_exactly_in_rgb_order(tmp_path):
    rgb = smooth_rgb()
    rgb[0, 0] = (255, 0, 0)
    image = load_image(write_rgb(tmp_path / "a.png", rgb))
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3) and image.flags.c_contiguous
    np.testing.assert_array_equal(image, rgb)
    assert tuple(image[0, 0]) == (255, 0, 0)


def test_jpeg_loads_close_to_the_original(tmp_path):
    rgb = smooth_rgb()
    image = load_image(write_rgb(tmp_path / "a.jpg", rgb, cv2.IMWRITE_JPEG_QUALITY, 95))
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - rgb).mean() < 3


def test_grayscale_is_copied_to_three_channels(tmp_path):
    gray = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    assert cv2.imwrite(str(tmp_path / "g.png"), gray)
    image = load_image(tmp_path / "g.png")
    assert image.shape == (48, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[0, 0] = (200, 100, 50, 0)  # fully transparent pixel keeps its stored colour
    rgba[1:, :, 3] = 255
    assert cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    image = load_image(tmp_path / "a.png")
    assert image.shape == (4, 5, 3)
    assert tuple(image[0, 0]) == (200, 100, 50)
    assert tuple(image[3, 4]) == (10, 20, 30)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    gray16 = np.array([[0, 257, 257 * 100, 65535]], np.uint16)
    assert cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    image = load_image(tmp_path / "g16.png")
    assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 100, 255])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])

    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[0, 0] = (65535, 257 * 128, 0)
    assert cv2.imwrite(str(tmp_path / "c16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert tuple(load_image(tmp_path / "c16.png")[0, 0]) == (255, 128, 0)


def test_jpeg_with_bytes_after_end_marker_loads(tmp_path):
    path = write_rgb(tmp_path / "trailer.jpg", smooth_rgb())
    path.write_bytes(path.read_bytes() + b"\x00" * 16 + b"camera trailer \xff\xda")
    assert load_image(path).shape == (48, 64, 3)


def test_progressive_jpeg_loads(tmp_path):
    path = write_rgb(tmp_path / "p.jpg", smooth_rgb(), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert load_image(path).shape == (48, 64, 3)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="No such file") as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ImageLoadError, match="directory") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "data",
    [b"this is not an image at all" * 10, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4],
    ids=["text", "jpeg-header-then-garbage"],
)
def test_undecodable_bytes(tmp_path, data):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageLoadError, match="not a decodable image|truncated JPEG") as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fraction", [0.5, 0.95])
@pytest.mark.parametrize("progressive", [0, 1])
def test_truncated_jpeg(tmp_path, fraction, progressive):
    data = write_rgb(
        tmp_path / "full.jpg", smooth_rgb(), cv2.IMWRITE_JPEG_PROGRESSIVE, progressive
    ).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageLoadError, match="truncated JPEG") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_jpeg_missing_only_its_end_marker(tmp_path):
    data = write_rgb(tmp_path / "full.jpg", smooth_rgb()).read_bytes()
    assert data.endswith(b"\xff\xd9")
    path = tmp_path / "no_eoi.jpg"
    path.write_bytes(data[:-2])
    with pytest.raises(ImageLoadError, match="truncated JPEG"):
        load_image(path)


def test_unsupported_pixel_type(tmp_path):
    path = tmp_path / "float.tiff"
    assert cv2.imwrite(str(path), np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ImageLoadError, match="unsupported pixel type float32") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_unsupported_channel_count(tmp_path, monkeypatch):
    # No OpenCV codec returns two channels, so the decoder's answer is faked.
    path = write_rgb(tmp_path / "a.png", smooth_rgb())
    monkeypatch.setattr(image_io.cv2, "imdecode", lambda *_: np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ImageLoadError, match="unsupported channel count 2") as info:
        load_image(path)
    assert str(path) in str(info.value)
