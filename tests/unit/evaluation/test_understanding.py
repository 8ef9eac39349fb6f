"""Caption metrics (identical = maximal), attribute precision/recall/F1 and VQA accuracy with known answers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from unif2ace.evaluation.captions import caption_metrics, tokenize
from unif2ace.evaluation.understanding import attribute_prf, normalise_answer, vqa_scores, yes_no

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "records.jsonl"


@pytest.fixture(scope="module")
def records():
    recs = [json.loads(line) for line in MINI.read_text().splitlines()[:6]]
    return {r["id"]: r for r in recs}


def test_tokenize():
    assert tokenize("A woman, smiling. She's 30-ish!") == "a woman smiling she's 30-ish"


def test_identical_captions_score_maximal_and_different_lower(records):
    pytest.importorskip("pycocoevalcap")
    refs = {k: [r["caption"]] for k, r in records.items()}
    same = {k: r["caption"] for k, r in records.items()}
    scores, skipped = caption_metrics(same, refs, meteor=False)
    assert [scores[f"bleu{i}"] for i in range(1, 5)] == pytest.approx([1.0] * 4, abs=1e-6)
    assert scores["rouge_l"] == pytest.approx(1.0) and scores["cider"] == pytest.approx(10.0, rel=1e-6)
    shuffled = dict(zip(same, list(same.values())[1:] + list(same.values())[:1], strict=True))
    worse, _ = caption_metrics(shuffled, refs, meteor=False)
    assert all(worse[k] < scores[k] for k in ("bleu4", "rouge_l", "cider"))
    assert skipped == []


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs a Java runtime")
def test_meteor_identical_is_one():
    pytest.importorskip("pycocoevalcap")
    refs = {"a": ["a woman with long black hair"], "b": ["a bald man with glasses"]}
    scores, skipped = caption_metrics({"a": refs["a"][0], "b": refs["b"][0]}, refs)
    assert skipped == [] and scores["meteor"] == pytest.approx(1.0, abs=1e-6)


def test_meteor_without_java_is_skipped_with_a_line(monkeypatch):
    pytest.importorskip("pycocoevalcap")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    scores, skipped = caption_metrics({"a": "a man"}, {"a": ["a man"]})
    assert "meteor" not in scores and len(skipped) == 1 and "Java" in skipped[0]


def test_caption_metrics_bad_input():
    with pytest.raises(ValueError, match="no reference"):
        caption_metrics({"a": "x"}, {})


def test_attribute_prf_known_answers(records):
    same = {k: r["caption"] for k, r in records.items()}
    overall, per_attr, items = attribute_prf(same, records)
    assert overall["recall"] == pytest.approx(1.0) and overall["expected"] > 10
    assert overall["precision"] >= 0.9  # reference captions are contradiction-checked against their records
    rid = next(iter(records))
    gender = records[rid]["attributes"]["gender"]["value"]
    wrong = "A man with a beard." if gender == "female" else "A woman."
    one, _, _ = attribute_prf({rid: wrong}, records)
    assert one["precision"] < 1.0 and one["recall"] < 1.0
    assert math.isnan(attribute_prf({rid: "A photo."}, records)[0]["precision"])  # no claims -> undefined
    assert "gender" in per_attr and set(items) == set(records)


def test_vqa_scores():
    turns = [
        {"pred": "No, she is not.", "ref": "No. She is not smiling.", "kind": "yesno"},
        {"pred": "Yes.", "ref": "No.", "kind": "yesno"},
        {"pred": "The hair is black", "ref": "hair is black.", "kind": "open"},
    ]
    s = vqa_scores(turns)
    assert s["yes_no_accuracy"] == pytest.approx(0.5) and s["yes_no_questions"] == 2
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert normalise_answer("The Hair, is black!") == "hair is black" and yes_no("Maybe") is None
