"""User inputs of the pipeline -> checked values, with one-line ``ValueError`` s that name the problem and the fix.

Images may be a ``PIL.Image``, a file path, a ``uint8`` numpy array ``(H, W, 3)`` / ``(H, W)`` (``(H, W, 4)`` is
composited on white), or a float torch tensor ``(3, H, W)`` in ``[-1, 1]`` (the package's tensor convention).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unif2ace.utils.images import MAX_PIXELS, MIN_SIDE, from_tensor, load_image, to_rgb

__all__ = ["MAX_PROMPT_CHARS", "check_int", "check_prompts", "check_seed", "to_pil"]

MAX_PROMPT_CHARS = 4000
"""Longest prompt / question accepted (the model's text budget is far smaller; longer text is cut)."""

ImageInput = Image.Image | str | Path | np.ndarray | torch.Tensor


def _check_size(width: int, height: int, what: str) -> None:
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"{what} is too small ({width}x{height}); give an image of at least {MIN_SIDE} px per side")
    if width * height > MAX_PIXELS:
        raise ValueError(f"{what} is too large ({width}x{height} > {MAX_PIXELS // 1_000_000} MP); downscale it first")


def to_pil(image: Any, what: str = "image") -> Image.Image:
    """Any supported image input -> RGB ``PIL.Image``.

    Raises:
        ValueError: unsupported type, bad array shape/dtype, unreadable / missing file, tiny or huge image.
    """
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, what)
        return to_rgb(image)
    if isinstance(image, (str, Path)):
        if isinstance(image, str) and not image.strip():
            raise ValueError(f"{what} path is empty; pass a file path, a PIL image or an array")
        try:
            return load_image(image)
        except FileNotFoundError:
            raise ValueError(f"{what} file not found: {image}") from None
    if isinstance(image, np.ndarray):
        return _from_array(image, what)
    if isinstance(image, torch.Tensor):
        if image.dim() == 4 and image.shape[0] == 1:
            image = image[0]
        if image.dim() != 3 or image.shape[0] != 3 or not image.dtype.is_floating_point:
            raise ValueError(
                f"{what} tensor must be float (3, H, W) in [-1, 1], got {image.dtype} {tuple(image.shape)}"
            )
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"{what} tensor holds NaN or infinite values")
        _check_size(image.shape[2], image.shape[1], what)
        return from_tensor(image)
    raise ValueError(
        f"{what} must be a PIL image, a file path, a uint8 numpy array or a (3, H, W) tensor, "
        f"got {type(image).__name__}"
    )


def _from_array(arr: np.ndarray, what: str) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} array must be uint8 (H, W, 3), got dtype {arr.dtype}; convert with .astype(np.uint8)")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{what} array must have shape (H, W, 3), got {arr.shape}")
    _check_size(arr.shape[1], arr.shape[0], what)
    mode = "RGBA" if arr.shape[2] == 4 else "RGB"
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr), mode=mode))


def check_prompts(prompt: Any, what: str = "prompt") -> list[str]:
    """A prompt or a list of prompts -> non-empty list of non-empty strings.

    Raises:
        ValueError: not a string / list of strings, empty, or longer than :data:`MAX_PROMPT_CHARS`.
    """
    items = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{what} must be a non-empty string or a non-empty list of strings")
    out = []
    for i, text in enumerate(items):
        name = what if isinstance(prompt, str) else f"{what}[{i}]"
        if not isinstance(text, str):
            raise ValueError(f"{name} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{name} is empty; describe the face you want")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"{name} has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
        if "\x00" in text:
            raise ValueError(f"{name} contains a NUL character")
        out.append(text.strip())
    return out


def check_seed(seed: Any) -> int:
    """A seed in ``[0, 2**63)``; None draws a fresh one (recorded in the output so the call can be repeated).

    Raises:
        ValueError: not a non-negative integer below 2**63.
    """
    if seed is None:
        return secrets.randbelow(2**31)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def check_int(value: Any, name: str, low: int, high: int) -> int:
    """An integer in ``[low, high]``.

    Raises:
        ValueError: anything else (names the argument and the range).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def check_float(value: Any, name: str, low: float, high: float) -> float:
    """A finite number in ``[low, high]``.

    Raises:
        ValueError: anything else (names the argument and the range).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    value = float(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return value
