"""LLM / VLM judges over an OpenAI-compatible ``/chat/completions`` API (spec §8.1 Desc-/Conv- scores, VLM-score).

Paper protocol [INF where the paper is silent]: the judge (GPT-4o -> "-GPT", DeepSeek-V3 -> "-DS") compares texts
only: for *description* it scores the model's face description against the reference caption, for
*conversation* each answer against the reference answer, on an integer scale 1-10; scores are averaged. The
VLM-score asks a vision judge for a 0-100 rating of how well a generated face matches its prompt's fine-grained
attributes (image sent as a PNG data URL).

The client is built for long, interruptible runs:

* answers are cached on disk by a hash of the request (model, messages, temperature), so a rerun resumes and
  sends only what is missing; failures are never cached;
* 429 / 5xx / network errors are retried with exponential backoff (``Retry-After`` honoured, capped);
  requests are spaced to ``requests_per_minute``; other 4xx answers fail at once (bad key, bad model);
* an answer without a parsable score in range is asked again (up to the retry budget) and otherwise recorded as a
  failure with the raw text, never turned into a number.

Configuration: ``UNIF2ACE_JUDGE_BASE_URL`` (or ``OPENAI_BASE_URL``, default ``https://api.openai.com/v1``),
``UNIF2ACE_JUDGE_API_KEY`` (or ``OPENAI_API_KEY``), ``UNIF2ACE_JUDGE_MODEL`` (default ``gpt-4o``),
``UNIF2ACE_VLM_JUDGE_MODEL`` for the VLM-score (unset = skipped).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from unif2ace.utils.io import atomic_write_json

__all__ = ["JudgeClient", "JudgeResult", "judge_from_env", "parse_score", "DESC_PROMPT", "CONV_PROMPT", "VLM_PROMPT"]

SYSTEM = "You are a strict, fair evaluator of face descriptions. Follow the output format exactly."
DESC_PROMPT = (
    "Reference description of a face photo:\n{reference}\n\nCandidate description of the same photo:\n{candidate}\n\n"
    "Rate how accurately and completely the candidate describes the face compared with the reference (attributes, "
    "expression, accessories, background; penalise wrong or invented details). Answer with one line "
    "'Score: N' where N is an integer from 1 (useless) to 10 (as good as the reference), then one sentence why."
)
CONV_PROMPT = (
    "A question about a face photo:\n{question}\n\nReference answer:\n{reference}\n\nCandidate answer:\n"
    "{candidate}\n\nRate the candidate's correctness and helpfulness compared with the reference. Answer with one "
    "line 'Score: N' where N is an integer from 1 (wrong) to 10 (fully correct), then one sentence why."
)
VLM_PROMPT = (
    "The image was generated from this prompt:\n{prompt}\n\nRate from 0 to 100 how well the face in the image "
    "matches every fine-grained attribute the prompt states (gender, age, hair, accessories, expression, "
    "background). Answer with one line 'Score: N' (N an integer from 0 to 100), then one sentence why."
)

_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?", re.IGNORECASE)
_BARE = re.compile(r"^\s*\**(\d+(?:\.\d+)?)\**\s*(?:/\s*\d+)?\s*(?:$|[\n.,])")


def parse_score(text: str, low: float, high: float) -> float | None:
    """The score a judge answer states (``"Score: 7"``, ``"**Score:** 7/10"``, a bare leading ``"8"``), or None.

    Values outside ``[low, high]`` and answers whose ``/N`` denominator disagrees with ``high`` give None.
    """
    m = _SCORE.search(text) or _BARE.match(text)
    if m is None:
        return None
    value = float(m.group(1))
    denominator = m.group(2) if m.re is _SCORE else None
    if denominator is not None and float(denominator) != high:
        return None
    return value if low <= value <= high else None


@dataclass
class JudgeResult:
    """One judged item: ``score`` (None on failure), the judge's ``raw`` answer, ``error`` text, ``cached``."""

    score: float | None
    raw: str = ""
    error: str = ""
    cached: bool = False


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JudgeClient:
    """Chat-completions judge with disk cache, retries, backoff, rate limiting and score parsing.

    Args:
        base_url: API root (``.../v1``).
        api_key: bearer token.
        model: judge model name.
        cache_dir: folder of cached answers (one JSON file per request hash).
        max_retries: extra attempts after the first, shared by transport errors and unparsable answers.
        backoff: first retry delay in seconds (doubles each retry, capped at ``max_backoff``).
        max_backoff: longest wait between attempts, ``Retry-After`` included.
        requests_per_minute: spacing of requests (None = no spacing).
        timeout: seconds per request.
        sleep: the sleep function (tests pass a fake clock).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        cache_dir: str | Path,
        max_retries: int = 5,
        backoff: float = 2.0,
        max_backoff: float = 60.0,
        requests_per_minute: float | None = 60.0,
        timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base URL must start with http:// or https://, got {base_url!r}")
        self.base_url, self.api_key, self.model = base_url.rstrip("/"), api_key, model
        self.cache_dir = Path(cache_dir)
        self.max_retries, self.backoff, self.max_backoff, self.timeout = max_retries, backoff, max_backoff, timeout
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.sleep = sleep
        self._last = -1e9
        self.stats = {"requests": 0, "cached": 0, "retries": 0, "failures": 0}

    # ------------------------------------------------------------------ public
    def score_description(self, reference: str, candidate: str) -> JudgeResult:
        """1-10 score of a face description against the reference caption."""
        prompt = DESC_PROMPT.format(reference=reference, candidate=candidate)
        return self.judge([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}], 1, 10)

    def score_answer(self, question: str, reference: str, candidate: str) -> JudgeResult:
        """1-10 score of a VQA answer against the reference answer."""
        prompt = CONV_PROMPT.format(question=question, reference=reference, candidate=candidate)
        return self.judge([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}], 1, 10)

    def score_image(self, image: Image.Image, prompt: str) -> JudgeResult:
        """0-100 VLM-score of a generated face against its prompt (the image goes as a PNG data URL)."""
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        content = [
            {"type": "text", "text": VLM_PROMPT.format(prompt=prompt)},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        return self.judge([{"role": "user", "content": content}], 0, 100)

    def judge(self, messages: list[dict[str, Any]], low: float, high: float) -> JudgeResult:
        """Send ``messages`` (or read the cache) and parse a score in ``[low, high]``; failures are returned."""
        payload = {"model": self.model, "messages": messages, "temperature": 0.0}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / key[:2] / f"{key}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            score = parse_score(cached["answer"], low, high)
            if score is not None:
                self.stats["cached"] += 1
                return JudgeResult(score, cached["answer"], cached=True)
        raw, error = "", ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
            try:
                raw = self._post(payload)
            except _Retryable as err:
                error = str(err)
                self.sleep(self._delay(attempt, err.retry_after))
                continue
            except RuntimeError as err:
                self.stats["failures"] += 1
                return JudgeResult(None, "", str(err))
            score = parse_score(raw, low, high)
            if score is not None:
                atomic_write_json(path, {"model": self.model, "answer": raw, "time": time.time()})
                return JudgeResult(score, raw)
            error = f"no score in [{low:g}, {high:g}] in the answer"
            self.sleep(self._delay(attempt, None))
        self.stats["failures"] += 1
        return JudgeResult(None, raw, f"{error} (after {self.max_retries + 1} attempts)")

    # ------------------------------------------------------------------ transport
    def _delay(self, attempt: int, retry_after: float | None) -> float:
        return min(self.max_backoff, retry_after if retry_after is not None else self.backoff * 2**attempt)

    def _post(self, payload: dict[str, Any]) -> str:
        wait = self._last + self.interval - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last = time.monotonic()
        self.stats["requests"] += 1
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 429 or err.code >= 500:
                raise _Retryable(f"HTTP {err.code}", _retry_after(err.headers.get("Retry-After"))) from None
            raise RuntimeError(f"judge API answered HTTP {err.code} ({err.reason}); check the key and model") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise _Retryable(f"network error: {err}") from None
        try:
            text = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("malformed chat-completions answer") from None
        if not isinstance(text, str):
            raise _Retryable("answer content is not text")
        return text.strip()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def judge_from_env(
    cache_dir: str | Path, model_var: str = "UNIF2ACE_JUDGE_MODEL", default_model: str | None = "gpt-4o", **kwargs: Any
) -> tuple[JudgeClient | None, str]:
    """A judge configured from the environment, or ``(None, reason)`` when it is not configured.

    Args:
        cache_dir: answer cache folder.
        model_var: environment variable naming the model.
        default_model: model when the variable is unset (None = the judge is off unless the variable is set).
        **kwargs: passed to :class:`JudgeClient`.
    """
    key = os.environ.get("UNIF2ACE_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    model = os.environ.get(model_var) or default_model
    if not model:
        return None, f"{model_var} is not set"
    if not key:
        return None, "no API key (set UNIF2ACE_JUDGE_API_KEY or OPENAI_API_KEY)"
    base = os.environ.get("UNIF2ACE_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return JudgeClient(base, key, model, cache_dir, **kwargs), ""
