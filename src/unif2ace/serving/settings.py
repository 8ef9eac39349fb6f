"""Server limits and options: one dataclass, checked on construction, shared by the CLI, the app and the tests."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["API_KEY_ENV", "ServerSettings"]

API_KEY_ENV = "UNIF2ACE_API_KEY"
"""Environment variable read by ``unif2ace serve`` when ``--api-key`` is not given."""


@dataclass
class ServerSettings:
    """Limits and options of the HTTP server.

    Attributes:
        api_key: if set, every ``/v1/*`` call needs ``Authorization: Bearer <api_key>``; ``/health`` and the demo
            page stay open (the page asks for the key and sends it with its API calls).
        max_body_bytes: largest request body; larger ones get 413 before they are read in full.
        max_image_side: longest accepted side of an uploaded image, in pixels (checked from the header,
            before decoding).
        max_image_pixels: most pixels of an uploaded image (decompression-bomb guard).
        max_prompt_chars: longest prompt, question or negative prompt.
        max_images: most images per generation / edit request (OpenAI ``n``).
        max_steps: most sampling steps a request may ask for.
        max_new_tokens: most text tokens a chat request may ask for (``max_tokens`` is clamped to this).
        max_messages: most messages in one chat request.
        max_queue: requests that may wait for the model while one runs; more get 503 "busy".
        request_timeout_s: a request that has not finished (queueing + inference) after this many seconds gets
            504 and its job is cancelled at the next sampling step / decoded token.
        cors_origins: origins allowed by CORS (empty: same-origin only, the safe default).
    """

    api_key: str | None = None
    max_body_bytes: int = 25 * 1024 * 1024
    max_image_side: int = 4096
    max_image_pixels: int = 16_777_216
    max_prompt_chars: int = 4000
    max_images: int = 4
    max_steps: int = 256
    max_new_tokens: int = 512
    max_messages: int = 64
    max_queue: int = 64
    request_timeout_s: float = 300.0
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty; pass a non-empty key or none at all")
        positive = ("max_body_bytes", "max_image_side", "max_image_pixels", "max_prompt_chars", "max_images")
        positive += ("max_steps", "max_new_tokens", "max_messages", "max_queue")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be positive, got {self.request_timeout_s!r}")

    @classmethod
    def from_env(cls, api_key: str | None = None, **kwargs) -> ServerSettings:
        """Settings with the API key from ``api_key`` or else the ``UNIF2ACE_API_KEY`` environment variable."""
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        return cls(api_key=key, **kwargs)
