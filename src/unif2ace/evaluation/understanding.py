"""Understanding metrics that need no judge: attribute precision / recall / F1 of captions, VQA accuracy.

Attributes are read from free text with the taxonomy's phrase matcher
(:func:`unif2ace.data.annotation.taxonomy.mentions`, the same matcher that checks training captions):

* a *claim* is an (attribute, value) the generated caption states for an attribute the record has a value for;
  it is correct when the value equals the record's. Precision = correct claims / claims.
* the *expected* attributes of an item are those its reference caption states with the record's value (a caption
  cannot be blamed for leaving out what the reference does not say). Recall = expected attributes the generated
  caption states correctly / expected attributes.

VQA: exact match after normalisation (lower case, punctuation and articles removed) and, for yes/no questions
(``kind == "yesno"`` or a reference starting with yes/no), accuracy of the leading yes/no.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from unif2ace.data.annotation.taxonomy import TAXONOMY, mentions

__all__ = ["attribute_prf", "record_values", "vqa_scores", "normalise_answer", "yes_no"]


def record_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """Taxonomy attribute name -> value of a record (``{"value": ...}`` entries or plain values)."""
    out = {}
    for name, entry in (record.get("attributes") or {}).items():
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        if name in TAXONOMY and value is not None:
            out[name] = value
    return out


def _item_counts(caption: str, reference: str, values: dict[str, Any]) -> tuple[int, int, int, int, dict]:
    names = list(values)
    stated = mentions(caption, names)
    expected = {n for n, vs in mentions(reference, names).items() if vs == {values[n]}}
    claims = sum(len(vs) for vs in stated.values())
    correct = sum(values[n] in vs for n, vs in stated.items())
    hit = sum(n in stated and values[n] in stated[n] for n in expected)
    per_attr = {n: (values[n] in stated.get(n, set()), n in stated, n in expected) for n in set(stated) | expected}
    return correct, claims, hit, len(expected), per_attr


def attribute_prf(
    captions: Mapping[str, str], records: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Attribute precision / recall / F1 of generated captions against record attributes.

    Args:
        captions: record id -> generated caption.
        records: record id -> record (``attributes`` and reference ``caption``).

    Returns:
        ``(overall, per_attribute, per_item)``: overall ``precision``, ``recall``, ``f1`` (micro-averaged, with
        ``claims`` / ``expected`` counts); per attribute the same; per item ``precision`` / ``recall``
        (``nan`` where undefined), for group breakdowns.

    Raises:
        KeyError: a caption for an id that has no record.
    """
    tot = [0, 0, 0, 0]
    attrs: dict[str, list[int]] = {}
    items: dict[str, dict[str, float]] = {}
    for rid, caption in captions.items():
        record = records[rid]
        c, n, h, e, per = _item_counts(caption, record.get("caption") or "", record_values(record))
        tot = [tot[0] + c, tot[1] + n, tot[2] + h, tot[3] + e]
        items[rid] = {"precision": c / n if n else float("nan"), "recall": h / e if e else float("nan")}
        for name, (ok, said, wanted) in per.items():
            a = attrs.setdefault(name, [0, 0, 0, 0])
            a[0] += ok and said
            a[1] += said
            a[2] += ok and wanted
            a[3] += wanted
    return _prf(*tot), {k: _prf(*v) for k, v in sorted(attrs.items())}, items


def _prf(correct: int, claims: int, hit: int, expected: int) -> dict[str, float]:
    p = correct / claims if claims else float("nan")
    r = hit / expected if expected else float("nan")
    f1 = 2 * p * r / (p + r) if claims and expected and p + r > 0 else (0.0 if claims and expected else float("nan"))
    return {"precision": p, "recall": r, "f1": f1, "claims": claims, "expected": expected}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NON_WORD = re.compile(r"[^\w\s]")


def normalise_answer(text: str) -> str:
    """Lower case, punctuation and articles removed, single spaces."""
    return " ".join(_ARTICLES.sub(" ", _NON_WORD.sub(" ", text.lower())).split())


def yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"`` when the answer starts with it (``"No. She is not smiling."`` -> ``"no"``)."""
    words = normalise_answer(text).split()
    return words[0] if words and words[0] in ("yes", "no") else None


def vqa_scores(turns: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """VQA accuracy over answered turns.

    Args:
        turns: ``{"pred", "ref", "kind"}`` per question.

    Returns:
        ``exact_match`` (all questions), ``yes_no_accuracy`` (yes/no questions; ``nan`` if none), and the
        counts ``questions`` / ``yes_no_questions``.
    """
    exact = [normalise_answer(t["pred"]) == normalise_answer(t["ref"]) for t in turns]
    yn = [(yes_no(t["pred"]), yes_no(t["ref"])) for t in turns if t.get("kind") == "yesno" or yes_no(t["ref"])]
    yn = [(p, r) for p, r in yn if r is not None]
    return {
        "exact_match": sum(exact) / len(exact) if exact else float("nan"),
        "yes_no_accuracy": sum(p == r for p, r in yn) / len(yn) if yn else float("nan"),
        "questions": len(exact),
        "yes_no_questions": len(yn),
    }
