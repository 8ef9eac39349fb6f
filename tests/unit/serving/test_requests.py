import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from unif2ace.serving.errors import APIError
from unif2ace.serving.images import decode_data_url, decode_image_bytes, encode_png_b64, mask_from_image
from unif2ace.serving.requests import parse_chat, parse_edit_form, parse_generation, wants_caption
from unif2ace.serving.settings import ServerSettings

S = ServerSettings()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def face(colour=(200, 150, 120), size=32) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def data_url(img: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode()


def huge_png_header(width: int, height: int) -> bytes:
    """A real small PNG whose IHDR claims width x height (CRC fixed): refused from the header alone."""
    raw = bytearray(png_bytes(face(size=16)))
    ihdr = raw[12:29]  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(raw)


def test_data_url_round_trip_is_lossless():
    arr = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    img = decode_data_url(data_url(Image.fromarray(arr)), 4096, 10**7, "image")
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), arr)
    again = decode_image_bytes(base64.b64decode(encode_png_b64(img)), 4096, 10**7, "image")
    assert np.array_equal(np.asarray(again), arr)


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (20, 20), (10, 20, 30, 0))
    img = decode_data_url(data_url(rgba), 4096, 10**7, "image")
    assert np.asarray(img)[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("https://example.com/face.png", "not fetched"),
        ("face.png", "not a data URL"),
        ("data:text/plain;base64,aGVsbG8=", "media type text/plain"),
        ("data:image/png,rawbytes", "base64-encoded"),
        ("data:image/png;base64,@@@@", "invalid base64"),
        ("data:image/png;base64," + base64.b64encode(b"not an image at all").decode(), "not an image"),
        ("data:image/png;base64," + base64.b64encode(png_bytes(face())[:60]).decode(), "corrupt or truncated"),
        ("data:image/png;base64," + base64.b64encode(huge_png_header(20000, 20000)).decode(), "too large"),
        ("data:image/png;base64," + base64.b64encode(png_bytes(face(size=8))).decode(), "too small"),
    ],
)
def test_bad_data_urls_are_400(url, match):
    with pytest.raises(APIError, match=match) as info:
        decode_data_url(url, 4096, 16_777_216, "image")
    assert info.value.status == 400


def test_mask_conventions():
    size = (40, 20)
    transparent = Image.new("RGBA", size, (0, 0, 0, 255))
    transparent.putpixel((3, 4), (0, 0, 0, 0))  # OpenAI: transparent = edit
    mask = mask_from_image(png_bytes(transparent), size, 4096, 10**7, "mask")
    assert mask.shape == (20, 40) and mask.sum() == 1 and mask[4, 3]
    white = Image.new("L", size, 0)
    white.paste(255, (0, 0, 5, 20))  # opaque mask: white = edit
    assert mask_from_image(png_bytes(white), size, 4096, 10**7, "mask").sum() == 100
    with pytest.raises(APIError, match="is 40x20 but the image is 30x30"):
        mask_from_image(png_bytes(white), (30, 30), 4096, 10**7, "mask")
    with pytest.raises(APIError, match="selects no pixels"):
        mask_from_image(png_bytes(Image.new("L", size, 0)), size, 4096, 10**7, "mask")


def test_generation_fields_and_defaults():
    req = parse_generation({"prompt": " a smiling man ", "seed": 7, "steps": 8, "size": "64x64"}, S, 64)
    assert (req.prompt, req.seed, req.steps, req.n, req.stream) == ("a smiling man", 7, 8, 1, False)
    form = parse_edit_form({"prompt": "blond", "seed": "12", "guidance_scale": "2.5"}, S, 64)
    assert (form.seed, form.guidance_scale) == (12, 2.5)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({}, "missing required field 'prompt'"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 4001}, "4001 characters; the limit is 4000"),
        ({"prompt": 5}, "prompt must be a string"),
        ({"prompt": "a", "seed": -1}, r"seed must be an integer in \[0, "),
        ({"prompt": "a", "seed": "abc"}, "seed must be an integer"),
        ({"prompt": "a", "seed": 1.5}, "seed must be an integer"),
        ({"prompt": "a", "seed": True}, "seed must be an integer"),
        ({"prompt": "a", "n": 5}, r"n must be an integer in \[1, 4\]"),
        ({"prompt": "a", "steps": 0}, "steps must be an integer"),
        ({"prompt": "a", "guidance_scale": "lots"}, "guidance_scale must be a number"),
        ({"prompt": "a", "size": "512x512"}, "this model makes 64x64 images"),
        ({"prompt": "a", "response_format": "url"}, "response_format must be b64_json"),
        ({"prompt": "a", "seeed": 1}, "unknown field 'seeed'"),
        ({"prompt": "a", "stream": "yes"}, "stream must be true or false"),
    ],
)
def test_bad_generation_bodies(body, match):
    with pytest.raises(APIError, match=match) as info:
        parse_generation(body, S, 64)
    assert info.value.status == 400


def user(text, img=None):
    parts = [{"type": "text", "text": text}]
    if img is not None:
        parts.insert(0, {"type": "image_url", "image_url": {"url": data_url(img)}})
    return {"role": "user", "content": parts}


def test_chat_caption_vs_question_and_history():
    req = parse_chat({"messages": [{"role": "system", "content": "be nice"}, user("Describe this face.", face())]}, S)
    assert req.task == "caption" and req.history == [] and req.image.size == (32, 32)
    req = parse_chat({"messages": [user("", face())]}, S)
    assert req.task == "caption"
    msgs = [
        user("old image", face((0, 0, 0))),
        {"role": "assistant", "content": "ignored: before the latest image"},
        user("What colour is the hair?", face((255, 0, 0))),
        {"role": "assistant", "content": "Brown."},
        user("Describe the eyes."),
    ]
    req = parse_chat({"messages": msgs, "max_tokens": 20, "seed": 3}, S)
    assert req.task == "ask" and req.question == "Describe the eyes."
    assert req.history == [("What colour is the hair?", "Brown.")]
    assert np.asarray(req.image)[0, 0].tolist() == [255, 0, 0]
    assert (req.max_new_tokens, req.seed) == (20, 3)
    assert wants_caption("please caption it", []) and not wants_caption("is she smiling?", [])


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no image in the messages"),
        ({"messages": [user("q", face()), {"role": "assistant", "content": "a"}]}, "last message must have role"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role must be"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "type must be 'text' or 'image_url'"),
        ({"messages": [user("q", face())], "n": 2}, r"n must be an integer in \[1, 1\]"),
        ({"messages": [user("q", face())], "tools": []}, "unknown field 'tools'"),
        ({"messages": [user("q", face())], "max_tokens": 10**6}, "max_tokens must be an integer"),
        ({"messages": [user("x" * 5000, face())]}, "5000 characters"),
    ],
)
def test_bad_chat_bodies(body, match):
    with pytest.raises(APIError, match=match) as info:
        parse_chat(body, S)
    assert info.value.status == 400


def test_settings_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="max_queue must be a positive integer"):
        ServerSettings(max_queue=0)
    with pytest.raises(ValueError, match="api_key is empty"):
        ServerSettings(api_key=" ")
    monkeypatch.setenv("UNIF2ACE_API_KEY", "from-env")
    assert ServerSettings.from_env().api_key == "from-env"
    assert ServerSettings.from_env(api_key="flag").api_key == "flag"


def test_cli_serve_options_are_checked(capsys):
    from unif2ace.cli.main import build_parser, main
    from unif2ace.cli.serve import settings_from_args

    args = build_parser().parse_args(
        ["serve", "--api-key", "k", "--max-queue", "3", "--timeout", "5", "--max-body-mb", "2"]
    )
    settings = settings_from_args(args)
    assert (settings.api_key, settings.max_queue, settings.request_timeout_s) == ("k", 3, 5.0)
    assert settings.max_body_bytes == 2 * 1024 * 1024 and args.host == "127.0.0.1"
    assert build_parser().parse_args(["web", "--open"]).open_browser is True
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be in [0, 65535]" in capsys.readouterr().err
    assert main(["web", "--max-queue", "0"]) == 2
    assert "max_queue must be a positive integer" in capsys.readouterr().err
