"""The judge client against a local mock OpenAI-compatible server: retries, 429 + Retry-After, bad answers, cache."""

from __future__ import annotations

import pytest
from PIL import Image

from mock_openai import MockOpenAI
from unif2ace.evaluation.judge import JudgeClient, judge_from_env, parse_score


@pytest.fixture
def api():
    with MockOpenAI(default=(200, "Score: 7\nClose to the reference.", {})) as server:
        yield server


@pytest.fixture
def client(api, tmp_path):
    sleeps: list[float] = []
    c = JudgeClient(api.url, "sk-test", "judge-1", tmp_path / "cache", max_retries=3, backoff=0.5,
                    requests_per_minute=None, sleep=sleeps.append)  # fmt: skip
    c.sleeps = sleeps
    return c


def test_parse_score():
    assert parse_score("Score: 7\nfine", 1, 10) == 7
    assert parse_score("**Score:** 8/10", 1, 10) == 8
    assert parse_score("9. Very close.", 1, 10) == 9
    assert parse_score("Score: 11", 1, 10) is None
    assert parse_score("Score: 7/100", 1, 10) is None
    assert parse_score("I cannot rate this.", 1, 10) is None
    assert parse_score("Score: 85", 0, 100) == 85


def test_scores_and_cache_resume(api, client, tmp_path):
    r = client.score_description("A woman with black hair.", "A woman with dark hair.")
    assert r.score == 7 and not r.cached and len(api.requests) == 1
    req = api.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "judge-1" and "A woman with dark hair." in req["body"]["messages"][1]["content"]
    # a new client on the same cache (a resumed run) sends nothing
    again = JudgeClient(api.url, "sk-test", "judge-1", tmp_path / "cache", requests_per_minute=None)
    r2 = again.score_description("A woman with black hair.", "A woman with dark hair.")
    assert r2.score == 7 and r2.cached and len(api.requests) == 1


def test_429_and_5xx_are_retried_with_retry_after(api, client):
    api.queue = [(429, "slow down", {"Retry-After": "3"}), (503, "busy", {}), (200, "Score: 4", {})]
    r = client.score_answer("Is she smiling?", "No.", "Yes.")
    assert r.score == 4 and len(api.requests) == 3
    assert client.sleeps == [3.0, 1.0]  # Retry-After honoured, then backoff 0.5 * 2**1
    assert client.stats["retries"] == 2


def test_bad_answers_retried_then_recorded_as_failures(api, client):
    api.queue = [(200, "RAW:{not json", {}), (200, "I think it is good.", {}), (200, "Score: 9", {})]
    assert client.score_description("a", "b").score == 9
    api.default = (200, "Score: twelve", {})
    r = client.score_description("c", "d")
    assert r.score is None and "no score" in r.error and r.raw == "Score: twelve"
    assert client.stats["failures"] == 1
    # failures are not cached: the next run asks again
    n = len(api.requests)
    api.default = (200, "Score: 5", {})
    assert client.score_description("c", "d").score == 5 and len(api.requests) == n + 1


def test_auth_error_fails_at_once(api, client):
    api.queue = [(401, "bad key", {})]
    r = client.score_description("a", "b")
    assert r.score is None and "HTTP 401" in r.error and len(api.requests) == 1


def test_vlm_image_sent_as_data_url(api, client):
    api.default = (200, "Score: 83", {})
    r = client.score_image(Image.new("RGB", (8, 8), (200, 10, 10)), "a man with a beard")
    content = api.requests[0]["body"]["messages"][0]["content"]
    assert r.score == 83 and content[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_unconfigured_judge_is_skipped(monkeypatch, tmp_path):
    for var in ("UNIF2ACE_JUDGE_API_KEY", "OPENAI_API_KEY", "UNIF2ACE_VLM_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    client, why = judge_from_env(tmp_path)
    assert client is None and "API key" in why
    client, why = judge_from_env(tmp_path, "UNIF2ACE_VLM_JUDGE_MODEL", None)
    assert client is None and "UNIF2ACE_VLM_JUDGE_MODEL" in why
    with pytest.raises(ValueError, match="http"):
        JudgeClient("localhost:1", "k", "m", tmp_path)
