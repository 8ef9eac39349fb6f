"""Robust image loading and the pixel <-> tensor conventions used everywhere in unif2ace.

Conventions: images are RGB ``PIL.Image``s; model tensors are float ``(3, H, W)`` (or ``(B, 3, H, W)``) in
``[-1, 1]`` (Show-o's ``image_transform``: mean = std = 0.5, spec §2.3). ``load_image`` converts grayscale,
alpha (composited on white), palette, 16-bit, CMYK and EXIF-rotated files to plain RGB, and refuses corrupt,
tiny (< 16 px) or huge (> 40 MP) files with a one-line ``ValueError`` naming the file. ``iter_images`` reports
bad files and keeps going. Only numpy and Pillow are used (no torchvision).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
MIN_SIDE = 16
"""Images with a side shorter than this are refused."""
MAX_PIXELS = 40_000_000
"""Images with more pixels than this (40 MP) are refused before decoding (decompression-bomb guard)."""
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _to_uint8_gray(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float single-channel image -> 8-bit ``L`` (full-range scaling)."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr * 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else arr
    elif img.mode.startswith("I;16") or (img.mode == "I" and int(arr.max(initial=0)) > 255):
        arr = arr.astype(np.float64) / 257.0  # 16-bit range -> 8-bit
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white, 16-bit scaled, CMYK/YCbCr converted)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        return _composite_on_white(img)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_uint8_gray(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def load_image(path: str | Path, size: int | None = None) -> Image.Image:
    """Open an image file as RGB, applying EXIF orientation; optionally resize + centre-crop to ``size``.

    Args:
        path: image file.
        size: if given, output is ``size`` x ``size`` (shorter side resized, then centre crop).

    Returns:
        RGB ``PIL.Image``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: corrupt / not an image, tiny (< 16 px) or huge (> 40 MP); one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size  # header only, nothing decoded yet
                if width * height > MAX_PIXELS:
                    raise ValueError(
                        f"{path}: image too large ({width}x{height} > {MAX_PIXELS // 1_000_000} MP), refused"
                    )
                if min(width, height) < MIN_SIDE:
                    raise ValueError(f"{path}: image too small ({width}x{height}, need >= {MIN_SIDE} px per side)")
                img.load()
                rgb = to_rgb(ImageOps.exif_transpose(img))
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot decode image ({_first_line(err)})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError, Warning) as err:
        raise ValueError(f"{path}: cannot decode image ({_first_line(err)})") from None
    return resize_center_crop(rgb, size) if size is not None else rgb


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic; antialiased when shrinking) and centre-crop to a square."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=None if scale >= 1 else 3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB image -> ``(3, H, W)`` float32 in ``[-1, 1]``."""
    arr = np.asarray(to_rgb(img), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


def from_tensor(tensor: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` float in ``[-1, 1]`` -> RGB image (values clamped, rounded)."""
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got {tuple(tensor.shape)}")
    arr = ((tensor.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), mode="RGB")


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files (by extension) under ``folder``, sorted.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def iter_images(
    source: str | Path | Iterable[str | Path],
    size: int | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[tuple[Path, Image.Image]]:
    """Yield ``(path, RGB image)`` for a folder (recursive) or a list of paths; bad files are reported and skipped.

    Args:
        source: folder or iterable of image paths.
        size: optional square output size (see :func:`load_image`).
        skipped: if given, receives ``(path, one-line reason)`` for every file that could not be used.

    Yields:
        ``(path, image)`` pairs in order.
    """
    paths = list_images(source) if isinstance(source, (str, Path)) else [Path(p) for p in source]
    for path in paths:
        try:
            yield path, load_image(path, size)
        except (ValueError, FileNotFoundError) as err:
            logger.warning("skipping %s", _first_line(err))
            if skipped is not None:
                skipped.append((str(path), _first_line(err)))


def image_grid(
    rows: list[list[Image.Image]], pad: int = 2, fill: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Tile images into a grid, one list per row (cells sized by the largest image).

    Args:
        rows: ``rows[r][c]`` is the image at row ``r``, column ``c``.
        pad: pixels between cells.
        fill: background colour.

    Returns:
        RGB grid image.
    """
    if not rows or not any(rows):
        raise ValueError("image_grid needs at least one image")
    cell_w = max(im.width for row in rows for im in row)
    cell_h = max(im.height for row in rows for im in row)
    cols = max(len(row) for row in rows)
    grid = Image.new("RGB", (cols * cell_w + (cols + 1) * pad, len(rows) * cell_h + (len(rows) + 1) * pad), fill)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(to_rgb(im), (pad + c * (cell_w + pad), pad + r * (cell_h + pad)))
    return grid
