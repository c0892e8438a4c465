"""load_image: every supported file kind ends as HWC uint8 RGB; every failure names the file."""

import os

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


# ------------------------------------------------------------ EXIF orientation


def with_orientation(path, pixels: np.ndarray, orientation: int, lossless: bool = False):
    """Save RGB ``pixels`` (as stored) with an EXIF Orientation tag; PNG, TIFF and WebP with
    ``lossless`` keep them exact."""
    from PIL import Image

    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[image_io.EXIF_ORIENTATION_TAG] = orientation
    image.save(path, exif=exif.tobytes(), **({"lossless": True} if lossless else {}))
    return path


# Lossless formats, so PIL's and OpenCV's pixels can be compared exactly. TIFF carries the
# tag in its own directory, which OpenCV's TIFF decoder honours even with IMREAD_UNCHANGED
# (the hand-written turn this module had before turned such files twice).
@pytest.mark.parametrize("suffix", [".png", ".webp", ".tiff"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pil_exif_transpose_does(tmp_path, orientation, suffix):
    from PIL import Image, ImageOps

    stored = smooth_rgb(h=6, w=10, seed=orientation)
    path = with_orientation(tmp_path / f"o{suffix}", stored, orientation, lossless=True)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if orientation != 1:
        assert not np.array_equal(expected, stored)
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded, expected)
    assert loaded.flags.c_contiguous
    # The header alone gives the same (width, height).
    assert image_io.read_image_size(path) == (expected.shape[1], expected.shape[0])
    assert image_io.exif_orientation(path) == orientation
    # An opened PIL image gives the same array as its file.
    with Image.open(path) as image:
        np.testing.assert_array_equal(image_io.image_from_pil(image), expected)


def test_png_exif_in_an_imagemagick_text_chunk_is_ignored_by_size_and_pixels_alike(tmp_path):
    """PIL reads ImageMagick's "Raw profile type exif" text chunk, OpenCV does not: the
    file stays as stored, and its header size says so too."""
    from PIL import Image, PngImagePlugin

    stored = smooth_rgb(h=6, w=10)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[image_io.EXIF_ORIENTATION_TAG] = 6
    raw = exif.tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw)}\n{raw.hex()}\n", zip=True)
    path = tmp_path / "magick.png"
    image.save(path, pnginfo=info)
    with Image.open(path) as reopened:
        assert reopened.getexif().get(image_io.EXIF_ORIENTATION_TAG) == 6  # PIL sees it
        np.testing.assert_array_equal(image_io.image_from_pil(reopened), stored)
    np.testing.assert_array_equal(load_image(path), stored)
    assert image_io.read_image_size(path) == (10, 6)
    assert image_io.exif_orientation(path) == 1


def test_phone_photo_stored_sideways_loads_upright(tmp_path):
    """The README's case: a picture shown 48 wide x 64 high with a red square at x 4..20,
    y 24..40, stored as 64 x 48 pixels with EXIF orientation 6 (JPEG)."""
    shown = np.full((64, 48, 3), 255, np.uint8)
    shown[24:40, 4:20] = (255, 0, 0)
    path = with_orientation(tmp_path / "phone.jpg", np.rot90(shown, k=1).copy(), 6)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == (48, 64)  # stored sideways
    image = load_image(path)
    assert image.shape == (64, 48, 3)
    inside = image[24:40, 4:20]
    red = (inside[..., 0] > 200) & (inside[..., 1] < 80)
    assert red.mean() > 0.95


def test_broken_exif_is_ignored(tmp_path):
    path = write_rgb(tmp_path / "a.jpg", smooth_rgb())
    data = path.read_bytes()
    # An APP1 "Exif" segment whose TIFF block is garbage.
    broken = data[:2] + b"\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff" + data[2:]
    path.write_bytes(broken)
    assert load_image(path).shape == (48, 64, 3)
    assert image_io.exif_orientation(path) == 1


def test_read_image_size_names_the_file(tmp_path):
    with pytest.raises(ImageLoadError, match="nope.jpg.*No such file"):
        image_io.read_image_size(tmp_path / "nope.jpg")
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match="x.jpg.*not a readable image"):
        image_io.read_image_size(tmp_path / "x.jpg")


def test_missing_file_points_at_a_name_that_differs_in_case(tmp_path):
    write_rgb(tmp_path / "IMG_0001.JPG", smooth_rgb())
    with pytest.raises(ImageLoadError, match=r"IMG_0001.jpg.*has 'IMG_0001.JPG'.*case-sensitive"):
        load_image(tmp_path / "IMG_0001.jpg")


# ---------------------------------------------- decoder refusals keep their reason


def black_png(path, width: int, height: int, rows_per_chunk: int):
    """A valid all-black 8-bit gray PNG of any size, written in a blink: identical
    ``rows_per_chunk``-row chunks compressed once (a full flush makes them independent),
    repeated; the Adler-32 of n zero bytes is ``n % 65521 << 16 | 1``."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    assert height % rows_per_chunk == 0
    rows = b"\x00" * (width + 1) * rows_per_chunk  # filter byte 0 + black pixels
    compressor = zlib.compressobj(9)
    first = compressor.compress(rows) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(rows) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush(zlib.Z_FINISH)[:-4]
    adler = ((width + 1) * height % 65521) << 16 | 1
    idat = first + repeated * (height // rows_per_chunk - 1) + end + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def test_black_png_helper_writes_a_valid_png(tmp_path):
    path = black_png(tmp_path / "b.png", 300, 64, 16)
    np.testing.assert_array_equal(load_image(path), np.zeros((64, 300, 3), np.uint8))


def test_image_above_opencv_pixel_limit_names_size_limit_and_setting(tmp_path):
    path = black_png(tmp_path / "huge.png", 32800, 32800, 400)  # 1.076e9 > 2**30 pixels
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"cannot load image '{path}'")
    for part in ("32800x32800", "1075840000 pixels", "exceeds OpenCV's decode limit of 1073741824",
                 "OPENCV_IO_MAX_IMAGE_PIXELS"):  # fmt: skip
        assert part in message
    assert "\n" not in message
    assert image_io.read_image_size(path) == (32800, 32800)  # the header is fine


def test_png_wider_than_libpng_allows(tmp_path):
    path = black_png(tmp_path / "strip.png", 1_000_001, 2, 2)
    with pytest.raises(ImageLoadError, match=r"strip.png.*1000001x2.*libpng.*1000000 pixels"):
        load_image(path)


def test_pixel_limit_from_the_environment(tmp_path):
    """OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, so a fresh process sets it."""
    import subprocess
    import sys

    path = write_rgb(tmp_path / "small.png", smooth_rgb(h=40, w=40))
    code = (
        "from mtvision.data.image_io import load_image, ImageLoadError\n"
        f"try:\n    load_image({str(path)!r})\nexcept ImageLoadError as e:\n    print(e)\n"
    )
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "1000"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "small.png" in out and "40x40" in out and "decode limit of 1000 pixels" in out


# ---------------------------------------------------------- PIL images as files


def test_pil_jpeg_with_exif_orientation_gives_the_files_array(tmp_path):
    from PIL import Image

    path = with_orientation(tmp_path / "phone.jpg", smooth_rgb(h=40, w=64), 6)
    with Image.open(path) as image:
        from_pil = image_io.image_from_pil(image)
    assert from_pil.shape == (64, 40, 3)
    np.testing.assert_array_equal(from_pil, load_image(path))
    # convert("RGB") keeps the EXIF block, so the tag still turns the picture once;
    # exif_transpose removes it, so the picture is not turned twice.
    with Image.open(path) as image:
        np.testing.assert_array_equal(image_io.image_from_pil(image.convert("RGB")), from_pil)
    from PIL import ImageOps

    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
    np.testing.assert_array_equal(image_io.image_from_pil(upright), from_pil)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "1", "I;16"])
def test_pil_modes_become_rgb_as_their_files_do(tmp_path, mode):
    from PIL import Image

    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., :3] = smooth_rgb(h=5, w=7)
    rgba[..., 3] = 255
    rgba[0, 0] = (200, 100, 50, 0)  # transparent pixel keeps its stored colour
    image = Image.fromarray(rgba, "RGBA")
    if mode == "I;16":
        image = Image.fromarray(np.arange(35, dtype=np.uint16).reshape(5, 7) * 1871)
    elif mode == "P":
        image = image.convert("RGB").quantize(colors=16)
        image.info["transparency"] = 0
    else:
        image = image.convert(mode)
    path = tmp_path / "m.png"
    image.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == mode
        from_pil = image_io.image_from_pil(reopened)
    assert from_pil.dtype == np.uint8 and from_pil.shape == (5, 7, 3)
    np.testing.assert_array_equal(from_pil, load_image(path))
    if mode == "RGBA":
        assert tuple(from_pil[0, 0]) == (200, 100, 50)
    if mode == "I;16":
        np.testing.assert_array_equal(
            from_pil[..., 0], np.rint(np.arange(35).reshape(5, 7) * 1871 / 257)
        )


def test_pil_float_image_and_truncated_file_are_named(tmp_path):
    from PIL import Image

    with pytest.raises(ImageLoadError, match=r"'<PIL image>'.*unsupported pixel type float32"):
        image_io.image_from_pil(Image.fromarray(np.zeros((2, 3), np.float32)))
    data = write_rgb(tmp_path / "full.jpg", smooth_rgb()).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with Image.open(cut) as image, pytest.raises(ImageLoadError, match=r"cut.jpg.*PIL cannot"):
        image_io.image_from_pil(image)
