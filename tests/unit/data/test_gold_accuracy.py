"""Gold-set accuracy: the committed report and reliability lists agree with a fresh evaluation of the committed
mini records against the eye-labelled gold set; the scoring functions give known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unif2ace.cli.main import main
from unif2ace.data.annotation.gold import (
    RELIABLE_AT,
    _scores,
    evaluate,
    markdown_table,
    read_gold,
    unreliable_values,
)
from unif2ace.data.annotation.reliability import UNRELIABLE, UNRELIABLE_VALUES
from unif2ace.data.records import FaceRecord, read_records

REPO = Path(__file__).resolve().parents[3]
GOLD = REPO / "data" / "gold" / "labels.jsonl"
MINI = REPO / "data" / "faces-mini" / "records.jsonl"


@pytest.fixture(scope="module")
def scores():
    return evaluate(read_records(MINI), read_gold(GOLD))


def test_reliability_lists_match_the_gold_evaluation(scores):
    assert UNRELIABLE == {a for a, s in scores.items() if not s["reliable"]}
    assert UNRELIABLE_VALUES == unreliable_values(scores)
    for attr in ("gender", "smile", "mouth_open", "eyeglasses", "emotion"):
        assert scores[attr]["heldout_balanced"] >= RELIABLE_AT and scores[attr]["n"] >= 200


def test_committed_report_is_current(tmp_path, scores):
    out = tmp_path / "report.json"
    assert main(["data", "gold", str(MINI), "--gold", str(GOLD), "--out", str(out)]) == 0
    committed = json.loads((REPO / "data" / "gold" / "report.json").read_text())
    assert json.loads(out.read_text()) == committed
    assert committed["faces"] == 240 and committed["unreliable"] == sorted(UNRELIABLE)
    assert committed["attributes"]["beard"]["values"]["True"]["precision"] < RELIABLE_AT


def test_scores_known_answers():
    pairs = [(True, True)] * 8 + [(True, False)] * 2 + [(False, False)] * 88 + [(False, True)] * 2
    acc, bal = _scores(pairs)
    assert acc == pytest.approx(0.96) and bal == pytest.approx((0.8 + 88 / 90) / 2)
    assert _scores([(True, True)] * 3 + [(False, True)]) == (0.75, 0.5)  # constant guess = 1 / classes


def test_evaluate_on_a_toy_gold_set(tmp_path):
    gold = tmp_path / "labels.jsonl"
    rows = [
        {"id": f"f{i}", "labels": {"age": age, "beard": beard, "hat": None}}
        for i, (age, beard) in enumerate([("child", False), ("senior", True), ("teen", False), ("senior", False)])
    ]
    gold.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    preds = [("child", False), ("middle_aged", True), ("teen", False), ("senior", True)]
    records = [
        FaceRecord(f"f{i}", f"{i}.png", attributes={
            "age": {"value": a, "confidence": 0.9, "annotator": "ag@1"},
            "beard": {"value": b, "confidence": 0.9, "annotator": "col@1"},
        })
        for i, (a, b) in enumerate(preds)
    ]  # fmt: skip
    s = evaluate(records, read_gold(gold))
    assert s["age"]["n"] == 4 and s["age"]["accuracy"] == 0.75 and s["age"]["mae"] == 0.25  # senior vs middle-aged
    assert s["beard"]["values"]["True"] == {"predicted": 2, "precision": 0.5}
    assert s["hat"]["n"] == 0 and not s["hat"]["reliable"]  # null gold labels are unsure, left out
    assert "| hat | none | 0 | 0.0 | - |" in markdown_table(s)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "labels": {"wings": True}}) + "\n")
    with pytest.raises(ValueError, match="unknown gold label"):
        read_gold(bad)
    with pytest.raises(FileNotFoundError, match="gold labels not found"):
        read_gold(tmp_path / "none.jsonl")
