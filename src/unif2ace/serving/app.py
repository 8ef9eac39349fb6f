"""The FastAPI app: OpenAI-compatible endpoints, health, the web demo page, auth and body limits.

FastAPI + uvicorn (the ``serve`` extra) were chosen because one small async process can serve the JSON API, the
server-sent-event streams and the demo page together, with no build step and a light install. All inference
runs on one worker thread (:class:`~unif2ace.serving.worker.InferenceWorker`); the event loop only parses,
checks and encodes.
"""

from __future__ import annotations

import hmac
import logging
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from unif2ace.serving.endpoints import chat_completions, image_edits, image_generations
from unif2ace.serving.errors import APIError, error_body, error_response
from unif2ace.serving.settings import ServerSettings
from unif2ace.serving.worker import InferenceWorker

__all__ = ["create_app"]

log = logging.getLogger(__name__)


class _BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    """Bearer-key check on ``/v1/*`` and the request-body limit (``Content-Length`` and streamed bodies).

    Args:
        app: the wrapped ASGI app.
        settings: server settings (``api_key``, ``max_body_bytes``).
    """

    def __init__(self, app: Any, settings: ServerSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["path"].startswith("/v1/") and not self._authorized(headers.get("authorization", "")):
            await self._reject(scope, receive, send, _auth_error(headers.get("authorization")))
            return
        limit = self.settings.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await self._reject(scope, receive, send, _too_large(int(length), limit))
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(seen)
            return message

        await self.app(scope, limited_receive, send)

    def _authorized(self, header: str) -> bool:
        if self.settings.api_key is None:
            return True
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.settings.api_key.encode()
        )

    @staticmethod
    async def _reject(scope: dict, receive: Any, send: Any, err: APIError) -> None:
        await error_response(err)(scope, receive, send)


def _auth_error(header: str | None) -> APIError:
    problem = "missing Authorization header" if not header else "invalid API key"
    return APIError(
        401,
        f"{problem}; send 'Authorization: Bearer <key>' with the key the server was started with",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _too_large(size: int, limit: int) -> APIError:
    return APIError(
        413,
        f"request body is {size} bytes, over the {limit} byte limit; send smaller images (the model works at low "
        "resolution anyway)",
        code="request_too_large",
    )


def create_app(pipeline: Any, settings: ServerSettings | None = None) -> FastAPI:
    """The server app over a loaded pipeline.

    Args:
        pipeline: a :class:`~unif2ace.pipeline.Unif2acePipeline` (``name``, ``model_hash``, ``image_size``,
            ``generate`` / ``caption`` / ``ask`` / ``edit``).
        settings: limits and the optional API key (default: :class:`ServerSettings` ()).

    Returns:
        The FastAPI app; its inference worker stops when the app shuts down.
    """
    settings = settings or ServerSettings()
    app = FastAPI(title="unif2ace", version=_version(), docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pipeline, app.state.settings = pipeline, settings
    app.state.worker = InferenceWorker(settings.max_queue)
    app.state.started = int(time.time())
    app.router.add_event_handler("shutdown", app.state.worker.close)
    _add_error_handlers(app)
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/images/generations", image_generations, methods=["POST"])
    app.add_api_route("/v1/images/edits", image_edits, methods=["POST"])
    app.add_api_route("/v1/models", _models, methods=["GET"])
    app.add_api_route("/v1/models/{model_id}", _model, methods=["GET"])
    app.add_api_route("/health", _health, methods=["GET"])
    app.add_api_route("/", _index, methods=["GET"], response_class=HTMLResponse)
    app.add_middleware(GuardMiddleware, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def _version() -> str:
    from unif2ace import __version__

    return __version__


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(_BodyTooLarge)
    async def _body_too_large(request: Request, err: _BodyTooLarge) -> JSONResponse:
        return error_response(_too_large(int(err.args[0]), request.app.state.settings.max_body_bytes))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = str(err.detail)
        if err.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /v1/models, /v1/chat/completions, ..."
        elif err.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return JSONResponse(error_body(err.status_code, message), err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=(type(err), err, err.__traceback__))
        return JSONResponse(error_body(500, f"internal server error ({type(err).__name__})"), 500)


def _model_card(request: Request) -> dict[str, Any]:
    pipe = request.app.state.pipeline
    return {
        "id": pipe.name,
        "object": "model",
        "created": request.app.state.started,
        "owned_by": "unif2ace",
        "model_hash": pipe.model_hash,
        "image_size": pipe.image_size,
    }


async def _models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(request)]}


async def _model(request: Request, model_id: str) -> dict[str, Any]:
    card = _model_card(request)
    if model_id != card["id"]:
        raise APIError(404, f"model {model_id!r} not found; this server serves {card['id']!r}", code="model_not_found")
    return card


async def _health(request: Request) -> dict[str, Any]:
    state = request.app.state
    worker: InferenceWorker = state.worker
    return {
        "status": "ok",
        "model": state.pipeline.name,
        "model_hash": state.pipeline.model_hash,
        "queue": {"waiting": worker.waiting, "max": worker.max_queue, "running": worker.busy},
        "completed": worker.completed,
        "auth": state.settings.api_key is not None,
    }


async def _index(request: Request) -> HTMLResponse:
    page = resources.files("unif2ace.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
