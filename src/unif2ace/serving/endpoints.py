"""The OpenAI-compatible endpoints: chat completions (caption / VQA), image generations and image edits.

Each handler parses and checks the request (400s happen before the model is touched), then runs one job on the
inference worker. Extensions beyond OpenAI's schema: ``seed``, ``steps``, ``guidance_scale``,
``negative_prompt``, ``schedule``, ``temperature`` for images, ``region`` for edits, and a ``unif2ace`` object in
responses with the pipeline's metadata (seed, steps, model hash ...), so that any result can be repeated.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from unif2ace.serving.errors import APIError, bad_request, error_body
from unif2ace.serving.images import decode_image_bytes, encode_png_b64, mask_from_image
from unif2ace.serving.jobs import Emit, run_job, start_stream
from unif2ace.serving.requests import (
    EDIT_FIELDS,
    ChatRequest,
    GenerationRequest,
    parse_chat,
    parse_edit_form,
    parse_generation,
)
from unif2ace.serving.worker import check_cancelled

__all__ = ["chat_completions", "image_edits", "image_generations", "read_json"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        APIError: 400 for a body that is empty, not JSON, or not an object.
    """
    raw = await request.body()
    if not raw.strip():
        raise bad_request("request body is empty; send a JSON object (Content-Type: application/json)")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        raise bad_request(f"request body is not valid JSON{where}; send a JSON object", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, got {type(body).__name__}", code="invalid_json")
    return body


def _check_model(state: Any, model: Any) -> None:
    if model is not None and model != state.pipeline.name:
        raise APIError(
            404,
            f"model {model!r} not found; this server serves {state.pipeline.name!r} (GET /v1/models)",
            param="model",
            code="model_not_found",
        )


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event (``data: [DONE]`` for the string ``[DONE]``)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


# ---------------------------------------------------------------------------------------------- chat completions
def _answer(state: Any, req: ChatRequest, cancel: threading.Event, emit: Emit | None) -> Any:
    def on_text(piece: str) -> None:
        check_cancelled(cancel)
        if emit is not None and piece:
            emit(piece)

    kwargs = {"max_new_tokens": req.max_new_tokens, "seed": req.seed, "text_callback": on_text}
    if req.task == "caption":
        return state.pipeline.caption(req.image, **kwargs)
    return state.pipeline.ask(req.image, req.question, history=req.history, **kwargs)


def _chat_meta(req: ChatRequest, out: Any) -> tuple[str, dict[str, Any]]:
    finish = "stop" if out.metadata.get("finished", True) else "length"
    return finish, {**out.metadata, "task": req.task}


async def chat_completions(request: Request) -> Any:
    """``POST /v1/chat/completions``: caption (first turn asking to describe the face) or VQA with history."""
    state = request.app.state
    body = await read_json(request)
    _check_model(state, body.get("model"))
    req = await run_in_threadpool(parse_chat, body, state.settings)  # decodes images off the event loop
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": state.pipeline.name}
    timeout = state.settings.request_timeout_s
    if not req.stream:
        out = await run_job(state.worker, lambda cancel: _answer(state, req, cancel, None), timeout)
        finish, meta = _chat_meta(req, out)
        message = {"role": "assistant", "content": out.text}
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return {**head, "object": "chat.completion", "choices": [choice], "unif2ace": meta}
    events = start_stream(state.worker, lambda cancel, emit: _answer(state, req, cancel, emit), timeout)
    return StreamingResponse(
        _chat_stream(state, req, head, events), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _chat_stream(
    state: Any, req: ChatRequest, head: dict[str, Any], events: AsyncIterator[tuple[str, Any]]
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse({**head, "object": "chat.completion.chunk", "choices": [choice], **extra})

    yield chunk({"role": "assistant", "content": ""})
    async for kind, payload in events:
        if kind == "event":
            yield chunk({"content": payload})
        elif kind == "error":
            yield sse(error_body(payload.status, payload.message, payload.param, payload.code))
            return
        else:
            finish, meta = _chat_meta(req, payload)
            yield chunk({}, finish, unif2ace=meta)
    yield sse("[DONE]")


# ------------------------------------------------------------------------------------------ image generations
class _Progress:
    """Sampling callback: stops a cancelled job; emits previews at ``partial`` evenly spaced steps (or progress)."""

    def __init__(self, cancel: threading.Event, emit: Emit | None, partial: int) -> None:
        self.cancel, self.emit, self.partial = cancel, emit, partial
        self.wants_images = emit is not None and partial > 0
        self.sent = 0

    def __call__(self, step: int, total: int, images: list[Image.Image] | None) -> None:
        check_cancelled(self.cancel)
        if self.emit is None:
            return
        due = self.wants_images and images and step * self.partial // total > (step - 1) * self.partial // total
        if due:
            for i, img in enumerate(images):
                self.emit(
                    {
                        "type": "image_generation.partial_image",
                        "b64_json": encode_png_b64(img),
                        "partial_image_index": self.sent,
                        "image_index": i,
                        "step": step,
                        "total": total,
                    }
                )
            self.sent += 1
        else:
            self.emit({"type": "unif2ace.progress", "step": step, "total": total})


def _generate(state: Any, req: GenerationRequest, cancel: threading.Event, emit: Emit | None) -> Any:
    return state.pipeline.generate(
        req.prompt,
        num_images=req.n,
        steps=req.steps,
        guidance_scale=req.guidance_scale,
        negative_prompt=req.negative_prompt,
        seed=req.seed,
        schedule=req.schedule,
        temperature=req.temperature,
        callback=_Progress(cancel, emit, req.partial_images),
    )


def _images_body(state: Any, out: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    size = state.pipeline.image_size
    data = [
        {"b64_json": encode_png_b64(img), "revised_prompt": None, "seed": seed}
        for img, seed in zip(out.images, out.seeds, strict=True)
    ]
    meta = {**out.metadata, **(extra or {})}
    return {
        "created": int(time.time()),
        "data": data,
        "output_format": "png",
        "size": f"{size}x{size}",
        "unif2ace": meta,
    }


async def image_generations(request: Request) -> Any:
    """``POST /v1/images/generations``: faces from a prompt; ``stream: true`` sends previews while sampling."""
    state = request.app.state
    body = await read_json(request)
    _check_model(state, body.get("model"))
    req = parse_generation(body, state.settings, state.pipeline.image_size)
    timeout = state.settings.request_timeout_s
    if not req.stream:
        out = await run_job(state.worker, lambda cancel: _generate(state, req, cancel, None), timeout)
        return JSONResponse(_images_body(state, out))
    events = start_stream(state.worker, lambda cancel, emit: _generate(state, req, cancel, emit), timeout)
    return StreamingResponse(_image_stream(state, events), media_type="text/event-stream", headers=SSE_HEADERS)


async def _image_stream(state: Any, events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    async for kind, payload in events:
        if kind == "event":
            yield sse(payload, payload["type"])
        elif kind == "error":
            yield sse(error_body(payload.status, payload.message, payload.param, payload.code), "error")
        else:
            body = _images_body(state, payload)
            for i, item in enumerate(body["data"]):
                done = {
                    "type": "image_generation.completed",
                    "b64_json": item["b64_json"],
                    "image_index": i,
                    "seed": item["seed"],
                    "created_at": body["created"],
                    "size": body["size"],
                    "output_format": "png",
                    "unif2ace": body["unif2ace"],
                }
                yield sse(done, done["type"])


# ------------------------------------------------------------------------------------------------ image edits
async def image_edits(request: Request) -> Any:
    """``POST /v1/images/edits`` (multipart): regenerate a named ``region`` or the area of a ``mask`` file."""
    state, settings = request.app.state, request.app.state.settings
    req, image, regions, mask = await _read_edit(request)

    def job(cancel: threading.Event) -> Any:
        check_cancelled(cancel)
        return state.pipeline.edit(image, req.prompt, region=regions or None, mask=mask, seed=req.seed,
                                   steps=req.steps, guidance_scale=req.guidance_scale)  # fmt: skip

    out = await run_job(state.worker, job, settings.request_timeout_s)
    extra = {"edited_area_b64": encode_png_b64(out.mask.convert("RGB"))} if out.mask is not None else {}
    return JSONResponse(_images_body(state, out, extra))


async def _read_edit(request: Request) -> tuple[GenerationRequest, Image.Image, list[str], Image.Image | None]:
    """Parse and check an edit form: (request fields, image, region names, mask as an ``L`` image or None)."""
    state, settings = request.app.state, request.app.state.settings
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(415, "send multipart/form-data with fields image, prompt and region or mask")
    limits = (settings.max_image_side, settings.max_image_pixels)
    async with request.form(max_files=4, max_fields=64, max_part_size=settings.max_body_bytes) as form:
        unknown = sorted(set(form.keys()) - EDIT_FIELDS)
        if unknown:
            raise bad_request(f"unknown field {unknown[0]!r} in an image edit request", unknown[0])
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str) and k not in ("region", "region[]")}
        _check_model(state, fields.get("model"))
        req = parse_edit_form(fields, settings, state.pipeline.image_size)
        if req.n != 1:
            raise bad_request("n must be 1 for edits", "n")
        image_bytes = await _one_file(form, ("image", "image[]"), required=True)
        mask_bytes = await _one_file(form, ("mask",), required=False)
        regions = [r.strip() for v in form.getlist("region") + form.getlist("region[]") for r in str(v).split(",")]
        regions = [r for r in regions if r]
    image = await run_in_threadpool(decode_image_bytes, image_bytes, *limits, "image")
    if (mask_bytes is None) == (not regions):
        raise bad_request("send either a region field (e.g. hair or eyes,mouth) or a mask file, not both", "region")
    if mask_bytes is None:
        return req, image, regions, None
    selected = await run_in_threadpool(mask_from_image, mask_bytes, image.size, *limits, "mask")
    return req, image, regions, Image.fromarray(selected.astype("uint8") * 255, mode="L")


async def _one_file(form: Any, names: tuple[str, ...], required: bool) -> bytes | None:
    items = [v for n in names for v in form.getlist(n)]
    files = [v for v in items if isinstance(v, UploadFile)]
    if len(items) != len(files):
        raise bad_request(f"{names[0]} must be an uploaded file (multipart file part), not a text field", names[0])
    if not files:
        if required:
            raise bad_request(f"missing required file {names[0]!r}", names[0], code="missing_field")
        return None
    if len(files) > 1:
        raise bad_request(f"send one {names[0]} file, got {len(files)}", names[0])
    return await files[0].read()
