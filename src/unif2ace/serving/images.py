"""Images over HTTP: data URLs and uploads in (with size limits checked before decoding), base64 PNGs out.

Only ``data:`` URLs are accepted: the server never fetches anything from the network.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unif2ace.serving.errors import bad_request
from unif2ace.utils.images import MIN_SIDE, to_rgb

__all__ = ["decode_data_url", "decode_image_bytes", "encode_png_b64", "mask_from_image"]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)


def decode_data_url(url: str, max_side: int, max_pixels: int, param: str) -> Image.Image:
    """``data:image/...;base64,...`` -> RGB image.

    Raises:
        APIError: 400 for a non-data URL, bad base64, a non-image or an image outside the size limits.
    """
    if not isinstance(url, str) or not url:
        raise bad_request(f"{param} must be a data URL string such as data:image/png;base64,...", param)
    match = _DATA_URL.match(url)
    if match is None:
        if url.startswith(("http://", "https://")):
            raise bad_request(
                f"{param}: image URLs are not fetched (the server has no network access); send the image inline "
                "as data:image/png;base64,...",
                param,
                code="unsupported_url",
            )
        raise bad_request(f"{param} is not a data URL; send data:image/png;base64,<base64 bytes>", param)
    mime = (match.group("mime") or "").lower()
    if mime and not mime.startswith("image/"):
        raise bad_request(f"{param} has media type {mime}; send an image (image/png, image/jpeg, ...)", param)
    if not match.group("b64"):
        raise bad_request(f"{param} must be base64-encoded (data:image/png;base64,...)", param)
    try:
        data = base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(
            f"{param} holds invalid base64 data; encode the image bytes with standard base64", param
        ) from None
    return decode_image_bytes(data, max_side, max_pixels, param)


def _open_checked(data: bytes, max_side: int, max_pixels: int, param: str) -> Image.Image:
    if not data:
        raise bad_request(f"{param} is empty; send the bytes of a PNG or JPEG image", param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limits below decide
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise bad_request(
            f"{param} is too large (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP); the limit is {max_side} px "
            "per side, downscale it first",
            param,
            code="image_too_large",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise bad_request(f"{param} is not an image Pillow can read; send a PNG or JPEG file", param) from None
    width, height = img.size  # from the header; nothing is decoded yet
    if max(width, height) > max_side or width * height > max_pixels:
        raise bad_request(
            f"{param} is too large ({width}x{height}); the limit is {max_side} px per side and "
            f"{max_pixels / 1e6:.1f} MP, downscale it first",
            param,
            code="image_too_large",
        )
    if min(width, height) < MIN_SIDE:
        raise bad_request(f"{param} is too small ({width}x{height}); send at least {MIN_SIDE} px per side", param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError, Warning, Image.DecompressionBombError) as err:
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise bad_request(
            f"{param} is a corrupt or truncated image ({reason}); re-encode and resend it", param
        ) from None
    return img


def decode_image_bytes(data: bytes, max_side: int, max_pixels: int, param: str) -> Image.Image:
    """Encoded image bytes -> RGB image (EXIF orientation applied, alpha composited on white).

    Raises:
        APIError: 400 for empty / non-image / corrupt data, or an image outside the size limits.
    """
    img = _open_checked(data, max_side, max_pixels, param)
    return to_rgb(ImageOps.exif_transpose(img))


def mask_from_image(data: bytes, size: tuple[int, int], max_side: int, max_pixels: int, param: str) -> np.ndarray:
    """An uploaded mask -> boolean ``(H, W)`` array, True where the image is to be regenerated.

    OpenAI's convention first: if the mask has an alpha channel that is not fully opaque, the fully transparent
    pixels (alpha < 128) are edited. Otherwise light pixels (luminance >= 128) are edited.

    Raises:
        APIError: 400 for a bad image, a size different from the image's, or a mask that selects nothing.
    """
    img = _open_checked(data, max_side, max_pixels, param)
    if img.size != size:
        raise bad_request(
            f"{param} is {img.size[0]}x{img.size[1]} but the image is {size[0]}x{size[1]}; they must match", param
        )
    if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA"))[:, :, 3]
        if int(alpha.min()) < 255:
            selected = alpha < 128
            return _nonempty(selected, param)
    return _nonempty(np.asarray(img.convert("L")) >= 128, param)


def _nonempty(mask: np.ndarray, param: str) -> np.ndarray:
    if not mask.any():
        raise bad_request(
            f"{param} selects no pixels; mark the area to edit transparent (or white on an opaque mask)", param
        )
    return mask


def encode_png_b64(img: Image.Image) -> str:
    """RGB image -> base64 PNG text."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
