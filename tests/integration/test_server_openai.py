"""The HTTP server end to end: ``unif2ace serve`` on a free port with a tiny random bundle, driven by the official
``openai`` client and by raw HTTP (auth, limits, 20+ kinds of bad input); busy / timeout on an in-thread server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install 'unif2ace[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official client: pip install openai")

from serving_helpers import ThreadServer, b64_image, call, data_url, free_port, multipart, png_bytes  # noqa: E402

from unif2ace.serving import ServerSettings, create_app  # noqa: E402

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: the tiny model is ~10x faster so on a shared 2-core machine (server + test process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def server(tiny_bundle):
    """``unif2ace serve`` as a subprocess: API key from the environment, 1 MiB body limit."""
    port = free_port()
    env = {**os.environ, "UNIF2ACE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "unif2ace", "serve", "--model", str(tiny_bundle), "--port", str(port)]
    cmd += ["--max-body-mb", "1", "--threads", "1", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"unif2ace serve exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            if call(base, "GET", "/health", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("unif2ace serve did not answer /health within 90 s")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


def face_image(pipe) -> Image.Image:
    return pipe.generate("a woman with long dark hair", seed=11).images[0]


def chat_message(img: Image.Image, text: str) -> dict:
    return {
        "role": "user",
        "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": data_url(img)}}],
    }


def test_models_and_health(server, client, pipe):
    models = client.models.list()
    assert [m.id for m in models.data] == [pipe.name]
    status, _, body = call(server, "GET", "/health")  # open without a key
    health = json.loads(body)
    assert status == 200 and health["model_hash"] == pipe.model_hash and health["auth"] is True


def test_demo_page_is_served(server):
    status, headers, body = call(server, "GET", "/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    for element in (
        'id="gen-button"',
        'id="cap-button"',
        'id="ask-button"',
        'id="edit-button"',
        "gen-seed",
        "gen-steps",
    ):
        assert element in page


def test_openai_client_generates_the_same_face_as_the_pipeline(client, pipe):
    resp = client.images.generate(
        model=pipe.name, prompt="a smiling man with a beard", size="64x64", extra_body={"seed": 5, "steps": 3}
    )
    img = b64_image(resp.data[0].b64_json)
    again = client.images.generate(
        model=pipe.name, prompt="a smiling man with a beard", extra_body={"seed": 5, "steps": 3}
    )
    local = pipe.generate("a smiling man with a beard", seed=5, steps=3).images[0]
    assert img.size == (64, 64)
    assert np.array_equal(np.asarray(img), np.asarray(b64_image(again.data[0].b64_json)))  # seeded: repeats exactly
    assert np.array_equal(np.asarray(img), np.asarray(local))  # server == Python API for the same seed
    assert resp.model_extra["unif2ace"]["seed"] == 5


def test_openai_client_captions_an_image_in_a_chat_message(client, pipe):
    img = face_image(pipe)
    resp = client.chat.completions.create(model=pipe.name, messages=[chat_message(img, "Describe this face.")], seed=3)
    expected = pipe.caption(img, seed=3)
    assert resp.choices[0].message.content == expected.text and expected.text
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.model_extra["unif2ace"]["task"] == "caption"
    stream = client.chat.completions.create(
        model=pipe.name, messages=[chat_message(img, "Describe this face.")], seed=3, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
    assert len(chunks) >= 3 and chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_question_with_history_matches_ask(client, pipe):
    img = face_image(pipe)
    messages = [
        chat_message(img, "What colour is the hair?"),
        {"role": "assistant", "content": "It is brown."},
        {"role": "user", "content": "Is the person smiling?"},
    ]
    resp = client.chat.completions.create(model=pipe.name, messages=messages, seed=0, max_tokens=6)
    expected = pipe.ask(
        img, "Is the person smiling?", history=[("What colour is the hair?", "It is brown.")], seed=0, max_new_tokens=6
    )
    assert resp.choices[0].message.content == expected.text
    assert resp.model_extra["unif2ace"]["task"] == "ask"


def test_streamed_generation_sends_previews_then_the_image(server, pipe):
    status, headers, body = call(
        server,
        "POST",
        "/v1/images/generations",
        {"prompt": "a child", "seed": 4, "steps": 4, "stream": True, "partial_images": 2},
        AUTH,
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [json.loads(block.split("data: ", 1)[1]) for block in body.decode().split("\n\n") if block.strip()]
    kinds = [e["type"] for e in events]
    assert kinds.count("image_generation.partial_image") == 2 and kinds[-1] == "image_generation.completed"
    assert [e["step"] for e in events[:-1]] == [1, 2, 3, 4]
    final = b64_image(events[-1]["b64_json"])
    assert np.array_equal(np.asarray(final), np.asarray(pipe.generate("a child", seed=4, steps=4).images[0]))


def test_openai_client_edit_with_mask_keeps_the_rest(client, pipe):
    img = face_image(pipe)
    mask = Image.new("RGBA", img.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, img.width, img.height // 4))  # transparent top quarter = edit (OpenAI style)
    resp = client.images.edit(
        model=pipe.name,
        image=("face.png", png_bytes(img), "image/png"),
        mask=("mask.png", png_bytes(mask), "image/png"),
        prompt="the same person with blond hair",
        extra_body={"seed": 9},
    )
    out = np.asarray(b64_image(resp.data[0].b64_json)).astype(int)
    area = np.asarray(b64_image(resp.model_extra["unif2ace"]["edited_area_b64"]))[:, :, 0] > 127
    recon = np.asarray(pipe.reconstruct(img)).astype(int)
    assert area[: img.height // 4].all() and not area[img.height // 2 :].any()
    assert np.array_equal(out[~area], recon[~area])  # outside the token footprint: the tokenizer's reconstruction
    white = Image.new("L", img.size, 0)
    white.paste(255, (0, 0, img.width, img.height // 4))  # the same area as an opaque white-on-black mask
    direct = pipe.edit(img, "the same person with blond hair", mask=white, seed=9)
    assert np.array_equal(out, np.asarray(direct.images[0]).astype(int))


def test_region_edit_of_a_real_face(server, pipe):
    pytest.importorskip("dlib", reason="named regions need dlib landmarks (data extra)")
    face = REPO / "data" / "faces-mini" / "images" / "0-000000.png"
    if not face.is_file():
        pytest.skip("data/faces-mini is not present")
    body, ctype = multipart(
        {"image": ("face.png", face.read_bytes(), "image/png"), "prompt": "blond hair", "region": "hair", "seed": "1"}
    )
    status, _, raw = call(server, "POST", "/v1/images/edits", body, {**AUTH, "Content-Type": ctype})
    assert status == 200, raw[:300]
    resp = json.loads(raw)
    assert resp["unif2ace"]["regions"] == ["hair"] and resp["unif2ace"]["edited_tokens"] > 0


def test_auth(server, pipe):
    assert call(server, "GET", "/v1/models")[0] == 401
    status, headers, body = call(server, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    assert headers["www-authenticate"] == "Bearer"
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        bad.images.generate(model=pipe.name, prompt="a face")


TINY_PNG = png_bytes(Image.new("RGB", (32, 32), (120, 90, 80)))


def _huge_png() -> bytes:
    import struct
    import zlib

    raw = bytearray(png_bytes(Image.new("RGB", (16, 16))))
    raw[16:24] = struct.pack(">II", 20000, 20000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


def _damaged_png_url() -> str:
    raw = bytearray(png_bytes(Image.effect_noise((32, 32), 50).convert("RGB")))
    raw[60:80] = bytes(20)  # zeroed compressed pixel data, header intact
    return "data:image/png;base64," + __import__("base64").b64encode(bytes(raw)).decode()


def _chat(content, **extra):
    return {"messages": [{"role": "user", "content": content}], **extra}


def _img_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def _edit(fields):
    body, ctype = multipart(fields)
    return "/v1/images/edits", body, {"Content-Type": ctype}


GOOD_FACE = ("face.png", TINY_PNG, "image/png")
BAD_INPUTS = {
    "empty prompt": ("/v1/images/generations", {"prompt": ""}, {}, 400),
    "huge prompt": ("/v1/images/generations", {"prompt": "face " * 2000}, {}, 400),
    "missing prompt": ("/v1/images/generations", {"n": 1}, {}, 400),
    "bad seed": ("/v1/images/generations", {"prompt": "a face", "seed": -3}, {}, 400),
    "seed not a number": ("/v1/images/generations", {"prompt": "a face", "seed": "abc"}, {}, 400),
    "too many images": ("/v1/images/generations", {"prompt": "a face", "n": 50}, {}, 400),
    "unsupported size": ("/v1/images/generations", {"prompt": "a face", "size": "1024x1024"}, {}, 400),
    "unknown field": ("/v1/images/generations", {"prompt": "a face", "sed": 1}, {}, 400),
    "unknown schedule": ("/v1/images/generations", {"prompt": "a face", "schedule": "zigzag"}, {}, 400),
    "unknown model": ("/v1/images/generations", {"prompt": "a face", "model": "dall-e-3"}, {}, 404),
    "bad json": ("/v1/images/generations", b'{"prompt": "a face",', {"Content-Type": "application/json"}, 400),
    "json array": ("/v1/chat/completions", [1, 2], {}, 400),
    "empty body": ("/v1/chat/completions", b"", {"Content-Type": "application/json"}, 400),
    "no image in chat": ("/v1/chat/completions", _chat("hello"), {}, 400),
    "remote image url": ("/v1/chat/completions", _chat([_img_part("https://example.com/a.png")]), {}, 400),
    "non-image data url": (
        "/v1/chat/completions",
        _chat([_img_part("data:image/png;base64,aGVsbG8gd29ybGQ=")]),
        {},
        400,
    ),
    "corrupt png data": ("/v1/chat/completions", _chat([_img_part(_damaged_png_url())]), {}, 400),
    "truncated png": (
        "/v1/chat/completions",
        _chat([_img_part(data_url(Image.new("RGB", (32, 32)))[:-40] + "AAAA")]),
        {},
        400,
    ),
    "20k x 20k image": (
        "/v1/chat/completions",
        _chat([_img_part("data:image/png;base64," + __import__("base64").b64encode(_huge_png()).decode())]),
        {},
        400,
    ),
    "bad role": ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, {}, 400),
    "non-image upload": _edit(
        {"image": ("notes.txt", b"just some text", "text/plain"), "prompt": "x", "region": "hair"}
    )
    + (400,),
    "wrong mask size": _edit(
        {"image": GOOD_FACE, "prompt": "x", "mask": ("m.png", png_bytes(Image.new("L", (40, 40), 255)), "image/png")}
    )
    + (400,),
    "unknown region": _edit({"image": GOOD_FACE, "prompt": "x", "region": "tail"}) + (400,),
    "no region or mask": _edit({"image": GOOD_FACE, "prompt": "x"}) + (400,),
    "edit without image": _edit({"prompt": "x", "region": "hair"}) + (400,),
    "edit as json": ("/v1/images/edits", {"prompt": "x"}, {}, 415),
    "unknown route": ("/v1/videos/generations", {"prompt": "x"}, {}, 404),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_a_4xx_json_error(server, name):
    path, body, headers, expected = BAD_INPUTS[name]
    status, _, raw = call(server, "POST", path, body, {**AUTH, **headers})
    error = json.loads(raw)["error"]
    assert status == expected, error
    assert error["message"] and "\n" not in error["message"] and error["type"]


def test_oversized_bodies_are_413_and_the_server_keeps_serving(server, pipe):
    big = {"prompt": "a face", "negative_prompt": "x" * (1024 * 1024 + 10)}
    status, _, raw = call(server, "POST", "/v1/images/generations", big, AUTH)
    assert status == 413 and json.loads(raw)["error"]["code"] == "request_too_large"
    chunks = (b"x" * 65536 for _ in range(20))  # 1.25 MiB, chunked: no Content-Length to check up front
    status, _, raw = call(
        server, "POST", "/v1/images/generations", chunks, {**AUTH, "Content-Type": "application/json"}
    )
    assert status == 413 and "limit" in json.loads(raw)["error"]["message"]
    form, ctype = multipart({"image": ("big.png", b"\x89PNG" + bytes(1_200_000), "image/png"), "prompt": "x"})
    pieces = (form[i : i + 65536] for i in range(0, len(form), 65536))  # chunked multipart upload
    status, _, raw = call(server, "POST", "/v1/images/edits", pieces, {**AUTH, "Content-Type": ctype})
    assert status == 413 and json.loads(raw)["error"]["code"] == "request_too_large"
    status, _, raw = call(server, "POST", "/v1/images/generations", {"prompt": "a face", "seed": 1, "steps": 2}, AUTH)
    assert status == 200 and json.loads(raw)["data"][0]["seed"] == 1
    assert json.loads(call(server, "GET", "/health")[2])["status"] == "ok"


# ------------------------------------------------------------------------------ busy and timeouts, in-thread server
def _block(worker) -> threading.Event:
    gate = threading.Event()
    worker.submit(lambda: gate.wait(30))
    while not worker.busy:
        time.sleep(0.01)
    return gate


def test_full_queue_answers_503_busy_then_recovers(pipe):
    app = create_app(pipe, ServerSettings(max_queue=1, request_timeout_s=30))
    with ThreadServer(app) as base:
        gate = _block(app.state.worker)
        app.state.worker.submit(lambda: None)  # the one waiting slot
        status, headers, raw = call(base, "POST", "/v1/images/generations", {"prompt": "a face", "steps": 2})
        error = json.loads(raw)["error"]
        assert status == 503 and error["code"] == "busy" and "retry" in error["message"]
        assert headers["retry-after"] == "2"
        gate.set()
        deadline = time.monotonic() + 30  # a loaded CPU may take a moment to drain the two queued jobs
        while (app.state.worker.waiting or app.state.worker.busy) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert call(base, "POST", "/v1/images/generations", {"prompt": "a face", "steps": 2})[0] == 200


def test_timeouts_answer_504_and_cancel_the_job(pipe, monkeypatch):
    forward = pipe.model.forward

    def slow_forward(*args, **kwargs):  # >= 60 ms per model call on any CPU: 256 steps take > 15 s uncancelled
        time.sleep(0.06)
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.model, "forward", slow_forward)
    app = create_app(pipe, ServerSettings(request_timeout_s=1.0))
    with ThreadServer(app) as base:
        gate = _block(app.state.worker)
        status, _, raw = call(
            base, "POST", "/v1/chat/completions", _chat([_img_part(data_url(Image.new("RGB", (32, 32))))])
        )
        assert status == 504 and json.loads(raw)["error"]["code"] == "timeout"  # timed out while queued
        gate.set()
        start = time.monotonic()
        status, _, _ = call(base, "POST", "/v1/images/generations", {"prompt": "a face", "steps": 256})
        assert status == 504  # timed out while running: 256 slowed steps take far longer than 1 s
        status, _, _ = call(base, "POST", "/v1/images/generations", {"prompt": "a face", "steps": 2, "seed": 0})
        assert status == 200
        assert time.monotonic() - start < 15  # the 256-step job stopped at its next step instead of running on


def test_stream_timeout_ends_the_stream_with_an_error_event(pipe):
    app = create_app(pipe, ServerSettings(request_timeout_s=1.0))
    with ThreadServer(app) as base:
        gate = _block(app.state.worker)
        body = _chat([_img_part(data_url(Image.new("RGB", (32, 32))))], stream=True)
        status, _, raw = call(base, "POST", "/v1/chat/completions", body)
        gate.set()
    events = [json.loads(b.split("data: ", 1)[1]) for b in raw.decode().split("\n\n") if b.strip()]
    assert status == 200 and events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["error"]["code"] == "timeout" and "timed out after 1 s" in events[-1]["error"]["message"]


def test_concurrent_requests_do_not_mix(server, pipe):
    """Eight clients at once: every answer equals the Python API's for its own seed / image."""
    jobs = [("gen", seed) for seed in range(6)] + [("cap", 0), ("cap", 1)]
    faces = {1: face_image(pipe), 0: pipe.generate("an old man", seed=2).images[0]}
    results = {}

    def run(kind, key):
        if kind == "gen":
            body = {"prompt": "a woman with short hair", "seed": key, "steps": 3}
            results[(kind, key)] = call(server, "POST", "/v1/images/generations", body, AUTH)
        else:
            body = {"messages": [chat_message(faces[key], "Describe this face.")]}
            results[(kind, key)] = call(server, "POST", "/v1/chat/completions", body, AUTH)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for (kind, key), (status, _, raw) in results.items():
        assert status == 200, raw[:200]
        body = json.loads(raw)
        if kind == "gen":
            expected = pipe.generate("a woman with short hair", seed=key, steps=3).images[0]
            assert np.array_equal(np.asarray(b64_image(body["data"][0]["b64_json"])), np.asarray(expected))
        else:
            assert body["choices"][0]["message"]["content"] == pipe.caption(faces[key]).text
    assert len(results) == len(jobs)
