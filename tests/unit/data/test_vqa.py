"""VQA writer: >= 8 grounded pairs per image, balanced yes/no answers, answers consistent with the record."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from unif2ace.data.captions import text_problems, usable_attributes
from unif2ace.data.records import read_records
from unif2ace.data.vqa import KINDS, statement, write_vqa

MINI = Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "records.jsonl"


@pytest.fixture(scope="module")
def records():
    return read_records(MINI)


def test_mini_vqa_counts_kinds_and_balance(records):
    assert min(len(r.vqa) for r in records) >= 8
    kinds = Counter(p["kind"] for r in records for p in r.vqa)
    assert set(kinds) == set(KINDS)
    answers = [p["a"] for r in records for p in r.vqa if p["kind"] == "yesno"]
    assert all(a.startswith(("Yes. ", "No. ")) for a in answers)
    yes = sum(a.startswith("Yes") for a in answers) / len(answers)
    assert 0.4 <= yes <= 0.6, yes
    assert sum(any(p["kind"] == "dialog" for p in r.vqa) for r in records) >= 0.9 * len(records)


def test_every_answer_is_consistent_with_its_record(records):
    bad = [(r.id, p, text_problems(p["a"], r.attributes)) for r in records for p in r.vqa]
    assert not [b for b in bad if b[2]]


def test_yes_no_answers_agree_with_the_asked_value(records):
    """A "No" to an enum question must ask about a value other than the record's (and "Yes" the record's)."""
    for rec in records[:60]:
        values = usable_attributes(rec.attributes)
        for p in rec.vqa:
            if p["kind"] == "yesno" and p["q"].startswith("Is the person wearing"):
                name = {"glasses?": "eyeglasses", "sunglasses?": "sunglasses"}.get(p["q"].split()[-1])
                if name:
                    assert p["a"].startswith("Yes") == values[name], (rec.id, p)


def test_dialog_turns_are_consecutive_and_last(records):
    for rec in records[:40]:
        kinds = [p["kind"] for p in rec.vqa]
        if "dialog" in kinds:
            first = kinds.index("dialog")
            assert kinds[first:] == ["dialog"] * (len(kinds) - first) and len(kinds) - first >= 2


def test_write_vqa_deterministic_and_balanced_on_its_own():
    values = {
        "gender": "male", "smile": True, "eyeglasses": False, "beard": True, "emotion": "happy",
        "head_pose": "frontal", "background_color": "blue", "mouth_open": True, "face_shape": "round",
    }  # fmt: skip
    a, b = write_vqa(values, "s"), write_vqa(values, "s")
    assert a == b and len(a) >= 8
    yes = [p for p in a if p["kind"] == "yesno"]
    assert sum(p["a"].startswith("Yes") for p in yes) == sum(p["a"].startswith("No") for p in yes) == 2
    attrs = {k: {"value": v, "confidence": 1.0} for k, v in values.items()}
    assert not [p for p in a if text_problems(p["a"], attrs)]
    assert statement("eyeglasses", False, values) == "He wears no glasses."
