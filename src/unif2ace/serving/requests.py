"""Request bodies -> checked, typed requests. Every problem is a 400 naming the field and the fix.

JSON bodies (chat, generations) hold typed values; multipart forms (edits) hold strings, which
:func:`parse_edit_form` converts with the same range checks. Fields OpenAI defines but that do not apply to this
model (``quality``, ``style``, ``top_p`` ...) are accepted and ignored; unknown fields are refused so that a typo
such as ``"seeed"`` does not silently fall back to a random seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from unif2ace.serving.errors import bad_request
from unif2ace.serving.images import decode_data_url
from unif2ace.serving.settings import ServerSettings

__all__ = [
    "EDIT_FIELDS",
    "ChatRequest",
    "GenerationRequest",
    "parse_chat",
    "parse_edit_form",
    "parse_generation",
    "wants_caption",
]

MAX_SEED = 2**63
_GEN_FIELDS = {"prompt", "model", "n", "size", "response_format", "output_format", "stream", "partial_images"}
_GEN_EXTENSIONS = {"seed", "steps", "guidance_scale", "negative_prompt", "schedule", "temperature"}
_GEN_IGNORED = {"quality", "style", "user", "background", "moderation", "output_compression", "safety_identifier"}
_CHAT_FIELDS = {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "seed"}
_CHAT_IGNORED = {
    "temperature",
    "top_p",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "metadata",
    "store",
    "logit_bias",
    "response_format",
    "parallel_tool_calls",
    "service_tier",
    "reasoning_effort",
    "safety_identifier",
    "prompt_cache_key",
    "verbosity",
    "modalities",
}
EDIT_FIELDS = (
    {
        "image",
        "image[]",
        "mask",
        "prompt",
        "model",
        "n",
        "size",
        "response_format",
        "output_format",
        "seed",
        "steps",
        "guidance_scale",
        "region",
        "region[]",
    }
    | _GEN_IGNORED
    | {"input_fidelity"}
)
"""Form fields of an edit (OpenAI's plus ``seed`` / ``steps`` / ``guidance_scale`` / ``region``)."""
_DESCRIBE = re.compile(r"\b(describe|description|caption)\b", re.I)


@dataclass
class GenerationRequest:
    """A checked ``POST /v1/images/generations`` (also the generation part of an edit)."""

    prompt: str
    n: int = 1
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    schedule: str | None = None
    temperature: float | None = None
    stream: bool = False
    partial_images: int = 0


@dataclass
class ChatRequest:
    """A checked ``POST /v1/chat/completions``: one face image, the conversation about it and the new question."""

    image: Image.Image
    question: str
    history: list[tuple[str, str]] = field(default_factory=list)
    max_new_tokens: int | None = None
    seed: int | None = None
    stream: bool = False

    @property
    def task(self) -> str:
        """``caption`` when asked to describe the face (or nothing at all) with no history, else ``ask``."""
        return "caption" if wants_caption(self.question, self.history) else "ask"


def wants_caption(question: str, history: list[tuple[str, str]]) -> bool:
    """Whether a chat turn is a caption request: the first turn, empty or asking to describe / caption."""
    return not history and (not question.strip() or _DESCRIBE.search(question) is not None)


def check_fields(body: dict[str, Any], known: set[str], what: str) -> None:
    """Refuse fields outside ``known``."""
    unknown = sorted(set(body) - known)
    if unknown:
        raise bad_request(
            f"unknown field {unknown[0]!r} in {what}; accepted fields: {', '.join(sorted(known))}", unknown[0]
        )


def get_int(body: dict[str, Any], name: str, low: int, high: int, default: int | None = None) -> int | None:
    """``body[name]`` as an integer in ``[low, high]`` (form strings are parsed), or ``default`` if absent."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise bad_request(f"{name} must be an integer in [{low}, {high}], got {value!r}", name) from None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{name} must be an integer in [{low}, {high}], got {value!r}", name)
    return value


def get_float(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    """``body[name]`` as a finite number in ``[low, high]`` (form strings are parsed), or None if absent."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise bad_request(f"{name} must be a number in [{low}, {high}], got {value!r}", name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad_request(f"{name} must be a number in [{low}, {high}], got {value!r}", name)
    return float(value)


def get_text(body: dict[str, Any], name: str, limit: int, required: bool = False) -> str | None:
    """``body[name]`` as a stripped string of at most ``limit`` characters (required: non-empty)."""
    value = body.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise bad_request(f"missing required field {name!r}", name, code="missing_field")
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string, got {type(value).__name__}", name)
    if "\x00" in value:
        raise bad_request(f"{name} contains a NUL character", name)
    if len(value) > limit:
        raise bad_request(f"{name} has {len(value)} characters; the limit is {limit}", name, code="prompt_too_long")
    if required and not value.strip():
        raise bad_request(f"{name} is empty; describe the face you want", name)
    return value.strip()


def get_bool(body: dict[str, Any], name: str) -> bool:
    """``body[name]`` as a boolean (absent: False; form strings ``true``/``false`` are parsed)."""
    value = body.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false, got {value!r}", name)
    return value


def check_size_field(body: dict[str, Any], image_size: int) -> None:
    """``size`` must be absent, ``auto`` or the model's own ``SxS``; ``response_format`` / output format PNG."""
    size = body.get("size")
    if size not in (None, "auto", f"{image_size}x{image_size}"):
        raise bad_request(
            f"size {size!r} is not supported; this model makes {image_size}x{image_size} images "
            f"(send size={image_size}x{image_size} or auto)",
            "size",
        )
    if body.get("response_format") not in (None, "b64_json"):
        raise bad_request("response_format must be b64_json (the server keeps no files to link to)", "response_format")
    if body.get("output_format") not in (None, "png"):
        raise bad_request("output_format must be png", "output_format")


def parse_generation(body: dict[str, Any], settings: ServerSettings, image_size: int) -> GenerationRequest:
    """Check a generation body.

    Raises:
        APIError: 400 naming the first bad field.
    """
    check_fields(body, _GEN_FIELDS | _GEN_EXTENSIONS | _GEN_IGNORED, "an image generation request")
    check_size_field(body, image_size)
    return _generation_fields(body, settings, stream=get_bool(body, "stream"))


def _generation_fields(body: dict[str, Any], settings: ServerSettings, stream: bool) -> GenerationRequest:
    limit = settings.max_prompt_chars
    steps = get_int(body, "steps", 1, settings.max_steps)
    return GenerationRequest(
        prompt=get_text(body, "prompt", limit, required=True),
        n=get_int(body, "n", 1, settings.max_images, default=1),
        seed=get_int(body, "seed", 0, MAX_SEED - 1),
        steps=steps,
        guidance_scale=get_float(body, "guidance_scale", 0.0, 100.0),
        negative_prompt=get_text(body, "negative_prompt", limit),
        schedule=get_text(body, "schedule", 64),
        temperature=get_float(body, "temperature", 0.0, 10.0),
        stream=stream,
        partial_images=get_int(body, "partial_images", 0, settings.max_steps, default=0),
    )


def parse_edit_form(form: dict[str, Any], settings: ServerSettings, image_size: int) -> GenerationRequest:
    """Check the text fields of an edit form (files are handled by the caller)."""
    check_size_field(form, image_size)
    return _generation_fields(form, settings, stream=False)


def parse_chat(body: dict[str, Any], settings: ServerSettings) -> ChatRequest:
    """Check a chat body and pull out the face image, the history and the new question.

    The latest image in a user message is the face; the user / assistant turns from that message on form the
    conversation; system messages are ignored. The last message must come from the user.

    Raises:
        APIError: 400 naming the first bad field.
    """
    check_fields(body, _CHAT_FIELDS | _CHAT_IGNORED, "a chat completion request")
    for name in ("tools", "functions"):
        if name in body:
            raise bad_request(f"{name} are not supported by this model", name)
    if get_int(body, "n", 1, 1, default=1) != 1:
        raise bad_request("n must be 1", "n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {role, content} objects", "messages")
    if len(messages) > settings.max_messages:
        raise bad_request(f"{len(messages)} messages; the limit is {settings.max_messages}", "messages")
    turns = [_message(m, i, settings) for i, m in enumerate(messages)]
    image_at = max((i for i, t in enumerate(turns) if t[2] is not None), default=None)
    if image_at is None:
        raise bad_request(
            "no image in the messages; add a user content part "
            '{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}',
            "messages",
            code="missing_image",
        )
    if turns[-1][0] != "user":
        raise bad_request("the last message must have role 'user' (the question to answer)", "messages")
    convo = [(role, text) for role, text, _ in turns[image_at:] if role in ("user", "assistant")]
    history, pending = [], None
    for role, text in convo[:-1]:
        if role == "user":
            pending = text if pending is None else f"{pending}\n{text}"
        elif pending is not None:
            history.append((pending, text))
            pending = None
    question = convo[-1][1] if pending is None else f"{pending}\n{convo[-1][1]}"
    tokens = get_int(body, "max_completion_tokens", 1, settings.max_new_tokens)
    tokens = tokens if tokens is not None else get_int(body, "max_tokens", 1, settings.max_new_tokens)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("stream_options must be an object (its include_usage is ignored)", "stream_options")
    return ChatRequest(
        image=turns[image_at][2],
        question=question,
        history=history,
        max_new_tokens=tokens,
        seed=get_int(body, "seed", 0, MAX_SEED - 1),
        stream=get_bool(body, "stream"),
    )


def _message(msg: Any, i: int, settings: ServerSettings) -> tuple[str, str, Image.Image | None]:
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise bad_request(f"{where} must be an object with role and content", where)
    role = msg.get("role")
    if role not in ("system", "developer", "user", "assistant"):
        raise bad_request(f"{where}.role must be system, developer, user or assistant, got {role!r}", f"{where}.role")
    content = msg.get("content")
    if content is None and role == "assistant":
        return role, "", None
    if isinstance(content, str):
        return role, _limited(content, f"{where}.content", settings), None
    if not isinstance(content, list):
        raise bad_request(f"{where}.content must be a string or a list of content parts", f"{where}.content")
    texts, image = [], None
    for j, part in enumerate(content):
        name = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise bad_request(f"{name}.text must be a string", name)
            texts.append(part["text"])
        elif kind == "image_url":
            if role != "user":
                raise bad_request(f"{name}: images are only accepted in user messages", name)
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            image = decode_data_url(url, settings.max_image_side, settings.max_image_pixels, f"{name}.image_url")
        else:
            raise bad_request(f"{name}.type must be 'text' or 'image_url', got {kind!r}", name)
    return role, _limited("\n".join(texts), f"{where}.content", settings), image


def _limited(text: str, name: str, settings: ServerSettings) -> str:
    if len(text) > settings.max_prompt_chars:
        raise bad_request(f"{name} has {len(text)} characters; the limit is {settings.max_prompt_chars}", name)
    if "\x00" in text:
        raise bad_request(f"{name} contains a NUL character", name)
    return text.strip()
