"""Image loading: every bad kind of file is converted or refused with a one-line message naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unif2ace.utils import images
from unif2ace.utils.images import from_tensor, image_grid, iter_images, load_image, resize_center_crop, to_tensor


def _rgb(size=(40, 30), color=(10, 200, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_plain_rgb_roundtrip_and_tensor_range(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    t = to_tensor(img)
    assert t.shape == (3, 24, 32) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert np.array_equal(np.asarray(from_tensor(t)), arr)


def test_grayscale_becomes_rgb(tmp_path):
    Image.new("L", (20, 20), 77).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.mode == "RGB" and img.getpixel((3, 3)) == (77, 77, 77)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.save(tmp_path / "t.png")
    img = load_image(tmp_path / "t.png")
    assert img.mode == "RGB" and img.getpixel((5, 5)) == (255, 255, 255) and img.getpixel((0, 0)) == (255, 0, 0)


def test_palette_with_transparency(tmp_path):
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    img = load_image(tmp_path / "p.png")
    assert img.mode == "RGB" and img.getpixel((5, 5)) == (255, 255, 255) and img.getpixel((1, 1)) == (0, 255, 0)


def test_16bit_grayscale_is_scaled(tmp_path):
    arr = np.full((20, 20), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    Image.fromarray(arr).save(tmp_path / "d.png")
    img = load_image(tmp_path / "d.png")
    assert img.getpixel((5, 5)) == (255, 255, 255) and img.getpixel((0, 0)) == (0, 0, 0)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    img = load_image(tmp_path / "c.jpg")
    r, g, b = img.getpixel((5, 5))
    assert img.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    _rgb((40, 20)).save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (20, 40)


@pytest.mark.parametrize(
    ("name", "writer", "match"),
    [
        ("corrupt.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nnot really"), "cannot decode"),
        ("text.jpg", lambda p: p.write_text("hello"), "cannot decode"),
        ("tiny.png", lambda p: _rgb((8, 40)).save(p), "too small"),
        ("huge.png", lambda p: Image.new("L", (8000, 6000)).save(p), "too large"),
    ],
)
def test_bad_files_are_refused_with_one_line_naming_the_file(tmp_path, name, writer, match):
    path = tmp_path / name
    writer(path)
    with pytest.raises(ValueError, match=match) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_truncated_jpeg_is_refused(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image("/definitely/nope.png")


def test_resize_center_crop_shape_and_content():
    img = Image.new("RGB", (100, 50), (0, 0, 0))
    img.paste((255, 255, 255), (25, 0, 75, 50))  # white centre square
    out = resize_center_crop(img, 32)
    assert out.size == (32, 32)
    assert np.asarray(out)[4:-4, 4:-4].min() > 240  # centre crop keeps the white square


def test_iter_images_reports_and_continues(tmp_path, caplog):
    _rgb().save(tmp_path / "a_good.png")
    (tmp_path / "b_bad.png").write_bytes(b"garbage")
    _rgb((4, 4)).save(tmp_path / "c_tiny.png")
    Image.new("LA", (30, 30)).save(tmp_path / "d_gray_alpha.png")
    (tmp_path / "notes.txt").write_text("ignored")
    skipped: list = []
    out = list(iter_images(tmp_path, size=16, skipped=skipped))
    assert [p.name for p, _ in out] == ["a_good.png", "d_gray_alpha.png"]
    assert all(im.size == (16, 16) and im.mode == "RGB" for _, im in out)
    assert [s[0].rsplit("/", 1)[-1] for s in skipped] == ["b_bad.png", "c_tiny.png"]
    assert "b_bad.png" in caplog.text


def test_image_grid_layout():
    grid = image_grid([[_rgb((10, 10))] * 3, [_rgb((10, 10), (0, 0, 0))] * 2], pad=1)
    assert grid.size == (3 * 10 + 4, 2 * 10 + 3)
    assert grid.getpixel((1, 1)) == (10, 200, 30) and grid.getpixel((1, 12)) == (0, 0, 0)


def test_limits_are_module_constants():
    assert images.MIN_SIDE == 16 and images.MAX_PIXELS == 40_000_000
