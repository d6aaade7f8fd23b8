"""Decoding real photos in every common format, EXIF orientation, odd modes, and the model's preprocessing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL", reason="decoding needs Pillow (extras clip or eval)")

from PIL import Image, features  # noqa: E402

from semzip import InputError  # noqa: E402
from semzip.embed import Preprocess, collect_images, decode_image, to_pixels


def _rgb(photo_dir: Path, name: str = "chelsea.png") -> Image.Image:
    with Image.open(photo_dir / name) as img:
        return img.convert("RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


FORMATS = {  # format: (save options, max mean abs difference to the original in 8-bit levels)
    "PNG": ({}, 0.0),
    "BMP": ({}, 0.0),
    "TIFF": ({}, 0.0),
    "WEBP": ({"lossless": True}, 0.0),
    "JPEG": ({"quality": 95}, 3.0),
    "GIF": ({}, 12.0),  # 256-colour palette
    "AVIF": ({"quality": 90}, 6.0),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_formats_decode_to_the_same_photo(fmt, photo_dir):
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    original = _rgb(photo_dir)
    opts, tol = FORMATS[fmt]
    img = decode_image(_save(original, fmt, **opts))
    assert img.mode == "RGB" and img.size == original.size
    diff = np.abs(np.asarray(img, dtype=np.float64) - np.asarray(original, dtype=np.float64)).mean()
    assert diff <= tol


def test_bundled_jpeg_and_multipage_tiff(photo_dir):
    assert decode_image((photo_dir / "rocket.jpg").read_bytes()).size == (640, 427)
    first, second = _rgb(photo_dir, "chelsea.png"), _rgb(photo_dir, "coffee.png")
    data = _save(first, "TIFF", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(data)) as tif:
        assert tif.n_frames == 2
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(first))


def test_animated_gif_gives_its_first_frame():
    red, blue = Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))
    data = _save(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 2
    assert decode_image(data).getpixel((5, 5)) == (255, 0, 0)


@pytest.mark.parametrize("orientation,stored", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                (3, Image.Transpose.ROTATE_180),
                                                (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_exif_orientation_is_applied(orientation, stored, photo_dir):
    original = _rgb(photo_dir)  # 451 x 300, landscape
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(original.transpose(stored), "JPEG", quality=95, exif=exif.tobytes())
    img = decode_image(data)
    assert img.size == original.size
    diff = np.abs(np.asarray(img, dtype=np.float64) - np.asarray(original, dtype=np.float64)).mean()
    assert diff < 3.0


def test_grayscale_cmyk_alpha_palette_and_16_bit(photo_dir):
    original = _rgb(photo_dir)
    gray = original.convert("L")
    as_rgb = np.asarray(gray.convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(_save(gray, "PNG"))), as_rgb)
    assert np.array_equal(np.asarray(decode_image(_save(gray.convert("LA"), "PNG"))), as_rgb)
    sixteen = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)
    assert np.array_equal(np.asarray(decode_image(_save(sixteen, "PNG"))), as_rgb)

    cmyk = decode_image(_save(original.convert("CMYK"), "JPEG", quality=95))
    assert cmyk.mode == "RGB" and np.abs(np.asarray(cmyk, float) - np.asarray(original, float)).mean() < 3.0

    rgba = original.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(original.size))
    assert np.array_equal(np.asarray(decode_image(_save(rgba, "PNG"))), np.asarray(original))  # alpha dropped

    palette = original.quantize(64)
    palette.info["transparency"] = 0
    assert decode_image(_save(palette, "PNG", transparency=0)).mode == "RGB"


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_garbage_raises(data):
    with pytest.raises(Exception):
        decode_image(data)


def test_truncated_jpeg_raises(photo_dir):
    data = _save(_rgb(photo_dir), "JPEG")
    with pytest.raises(OSError):
        decode_image(data[: len(data) // 2])


def _stripes(width: int, height: int, colors: list[tuple[int, int, int]], vertical: bool = True) -> Image.Image:
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    n = len(colors)
    for k, c in enumerate(colors):
        if vertical:
            arr[:, k * width // n:(k + 1) * width // n] = c
        else:
            arr[k * height // n:(k + 1) * height // n] = c
    return Image.fromarray(arr)


def _denorm(x: np.ndarray, pre: Preprocess) -> np.ndarray:
    return (x.transpose(1, 2, 0) * np.asarray(pre.std) + np.asarray(pre.mean)) * 255


def test_normalisation_uses_the_models_mean_and_std():
    pre = Preprocess(16, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125))
    x = to_pixels(Image.new("RGB", (40, 30), (51, 102, 204)), pre)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    expected = (np.array([51, 102, 204]) / 255 - np.array(pre.mean)) / np.array(pre.std)
    np.testing.assert_allclose(x[:, 5, 7], expected, rtol=1e-5)


@pytest.mark.parametrize("vertical", [True, False])
def test_shortest_side_resize_then_centre_crop(vertical):
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    img = _stripes(96, 32, [red, green, blue]) if vertical else _stripes(32, 96, [red, green, blue], False)
    pre = Preprocess(32)
    x = _denorm(to_pixels(img, pre), pre)  # short side is already 32: no resize, crop the middle third
    np.testing.assert_allclose(x.reshape(-1, 3), np.tile(green, (32 * 32, 1)), atol=1e-3)
    big = img.resize((img.width * 3, img.height * 3), Image.Resampling.NEAREST)
    y = _denorm(to_pixels(big, pre), pre)  # downscaled by 3 first
    assert np.abs(y[4:-4, 4:-4] - np.array(green)).max() < 1.0


def test_resize_size_and_offsets_follow_torchvision():
    """A 100x61 image at size 40: torchvision's Resize(40) gives 65x40 (int(40*100/61)), CenterCrop(40)
    then starts at column round(12.5) = 12 (Python rounds half to even)."""
    arr = np.zeros((61, 100, 3), dtype=np.uint8)
    arr[:, :, 0] = np.arange(100, dtype=np.uint8)[None, :] * 2
    img = Image.fromarray(arr)
    pre = Preprocess(40, mean=(0, 0, 0), std=(1, 1, 1))
    ref = np.asarray(img.resize((65, 40), Image.Resampling.BICUBIC).crop((12, 0, 52, 40)), dtype=np.float32) / 255
    np.testing.assert_allclose(to_pixels(img, pre), ref.transpose(2, 0, 1), atol=1e-6)


def test_squash_mode_keeps_the_whole_image():
    pre = Preprocess(30, resize_mode="squash", interpolation="bilinear")
    x = _denorm(to_pixels(_stripes(90, 30, [(255, 0, 0), (0, 255, 0), (0, 0, 255)]), pre), pre)
    assert x[15, 2, 0] > 250 and x[15, 15, 1] > 250 and x[15, 27, 2] > 250


def test_collect_images_walks_folders_with_relative_ids(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ("a.JPG", "b/c.png", "b/notes.txt", ".hidden/x.png", ".y.png"):
        (tmp_path / rel).write_bytes(b"x")
    paths, ids = collect_images([tmp_path])
    assert ids == ["a.JPG", "b/c.png"] and paths == [tmp_path / "a.JPG", tmp_path / "b" / "c.png"]
    paths, ids = collect_images([tmp_path / "b", tmp_path / "a.JPG"])
    assert ids == [f"{(tmp_path / 'b').as_posix()}/c.png", (tmp_path / "a.JPG").as_posix()]


def test_collect_images_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        collect_images([tmp_path / "missing"])
    with pytest.raises(InputError, match="no image files"):
        collect_images([tmp_path])
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="same id"):
        collect_images([tmp_path / "a.png", tmp_path / "a.png"])
    with pytest.raises(InputError, match="no images given"):
        collect_images([])
