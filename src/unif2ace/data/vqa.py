"""Grounded visual question answering pairs from face attributes (spec §7.1 step 3, §7.3 VQA prompt).

UniF²aceD-1M has ~7.7 QA pairs per image about appearance, emotion, action and reasoning, written by GPT-4 from
the refined captions. Offline we write them from the same attributes the caption states, so every answer is
grounded: each answer is built from :func:`statement` sentences of the record's own values (checked with the phrase
matcher). Per image (when the attributes allow):

* ``appearance`` / ``emotion`` / ``action`` open questions (taxonomy question -> statement of the value);
* ``yesno`` questions, half answered "yes" (the true value of an enum, or a bool that is true) and half "no" (a
  different value of an enum, drawn from the attribute's other values, or a bool that is false);
* ``reasoning`` questions whose answers give the evidence (e.g. "could this be an ID photo?");
* one multi-turn conversation: consecutive pairs with ``kind == "dialog"``, in order.

Records store ``{"q", "a", "kind"}`` only, so a conversation is the run of ``dialog`` pairs of an image.
"""

from __future__ import annotations

import random
from typing import Any

from unif2ace.data.annotation.taxonomy import TAXONOMY, contradictions

KINDS = ("appearance", "emotion", "action", "reasoning", "yesno", "dialog")
YES_NO_PER_IMAGE = 4


def _subject(values: dict[str, Any]) -> tuple[str, str]:
    """(subject pronoun, possessive) for the record's gender."""
    return {"male": ("he", "his"), "female": ("she", "her")}.get(values.get("gender"), ("the person", "their"))


def statement(name: str, value: Any, values: dict[str, Any]) -> str:
    """One sentence stating ``name = value`` in words the phrase matcher recognises."""
    attr = TAXONOMY[name]
    subj, _ = _subject(values)
    subj = subj[0].upper() + subj[1:]
    phrase = attr.phrases[value][0]
    if name == "gender":
        return f"The person is a {phrase}."
    if name == "age":
        return f"The person is {phrase}."
    if name == "emotion":
        return f"{subj} looks {phrase}."
    if name in ("background_brightness", "background_color"):
        return f"The photo has {phrase}."
    if name in ("head_pose", "head_tilt"):
        return f"{subj} is shown {'with ' if phrase.startswith('the head') else ''}{phrase}."
    if attr.category == "accessories":
        return f"{subj} wears {phrase}."
    if attr.kind == "bool" and attr.group == "action" and name not in ("mouth_open", "eyes_closed"):
        return f"{subj} is {phrase}."
    return f"{subj} has {phrase}."


def _open(names: list[str], values: dict[str, Any], kind: str) -> list[dict[str, str]]:
    return [{"q": TAXONOMY[n].question, "a": statement(n, values[n], values), "kind": kind} for n in names]


def _yes_no(values: dict[str, Any], rng: random.Random, count: int) -> list[dict[str, str]]:
    yes, no = [], []
    for name, value in values.items():
        attr = TAXONOMY[name]
        if attr.kind == "bool":
            (yes if value else no).append((name, value, attr.question))
        elif name not in ("gender",):
            yes.append((name, value, _enum_question(name, value, values)))
            others = [v for v in attr.values if v != value]
            if others:
                no.append((name, value, _enum_question(name, rng.choice(others), values)))
    rng.shuffle(yes)
    rng.shuffle(no)
    half = count // 2
    picked = [("Yes", x) for x in yes[:half]] + [("No", x) for x in no[:half]]
    rng.shuffle(picked)
    return [{"q": q, "a": f"{word}. {statement(n, v, values)}", "kind": "yesno"} for word, (n, v, q) in picked]


def _enum_question(name: str, asked: Any, values: dict[str, Any]) -> str:
    """A yes/no question asking whether ``name`` has the value ``asked``."""
    attr = TAXONOMY[name]
    _, poss = _subject(values)
    word = attr.word(asked)
    if name == "emotion":
        return f"Does the person look {attr.phrases[asked][0]}?"
    if name == "age":
        return f"Is the person {attr.phrases[asked][0]}?"
    if name in ("head_pose", "head_tilt"):
        phrase = attr.phrases[asked][0]
        return f"Is the person shown {'with ' if phrase.startswith('the head') else ''}{phrase}?"
    return f"Is the {attr.noun} {word}?" if name.startswith("background") else f"Is {poss} {attr.noun} {word}?"


def _reasoning(values: dict[str, Any], rng: random.Random) -> list[dict[str, str]]:
    out = []
    evidence = [n for n in ("smile", "mouth_open", "emotion") if n in values]
    if "emotion" in values and len(evidence) > 1:
        answer = " ".join(statement(n, values[n], values) for n in evidence)
        q = rng.choice(
            ["How is the person feeling, and what gives it away?", "What mood does the face convey, and why?"]
        )
        out.append({"q": q, "a": answer, "kind": "reasoning"})
    checks = [n for n in ("head_pose", "sunglasses", "hat", "mouth_open") if n in values]
    if len(checks) >= 2:
        bad = {"head_pose": values.get("head_pose") != "frontal", "sunglasses": values.get("sunglasses") is True}
        bad |= {"hat": values.get("hat") is True, "mouth_open": values.get("mouth_open") is True}
        against = [n for n in checks if bad[n]]
        reasons = " ".join(statement(n, values[n], values) for n in (against or checks))
        verdict = "Probably not, because " if against else "It could be, because "
        reasons = reasons[0].lower() + reasons[1:]
        out.append(
            {"q": "Could this photo be used as a passport-style ID photo?", "a": verdict + reasons, "kind": "reasoning"}
        )
    return out


def _dialog(values: dict[str, Any], rng: random.Random) -> list[dict[str, str]]:
    turns = []
    looks = [n for n in ("gender", "face_shape", "eyebrow_shape") if n in values]
    if looks:
        turns.append(("Describe the person's face briefly.", looks))
    wear = [n for n in ("eyeglasses", "sunglasses", "hat", "earrings") if n in values]
    if wear:
        turns.append((rng.choice(["What are they wearing on their face or head?", "Any accessories?"]), wear[:2]))
    act = [n for n in ("smile", "mouth_open", "eyes_closed") if n in values]
    if act:
        turns.append((rng.choice(["And what is their expression doing?", "What about their mouth and eyes?"]), act))
    bg = [n for n in ("background_color", "background_brightness") if n in values]
    if bg:
        turns.append(("What is behind them?", bg))
    return (
        [
            {"q": q, "a": " ".join(statement(n, values[n], values) for n in names), "kind": "dialog"}
            for q, names in turns
        ]
        if len(turns) >= 2
        else []
    )


def write_vqa(values: dict[str, Any], seed: int | str = 0) -> list[dict[str, str]]:
    """QA pairs grounded in ``values`` (``name -> value``, already filtered by ``usable_attributes``).

    Args:
        values: attributes the answers may state.
        seed: phrasing seed (use ``f"{run_seed}:{record_id}"``).

    Returns:
        ``[{"q", "a", "kind"}, ...]`` with ``kind`` in :data:`KINDS`.
    """
    rng = random.Random(f"vqa:{seed}")
    groups = {g: [n for n in values if TAXONOMY[n].group == g] for g in ("appearance", "action", "emotion")}
    appearance = [n for n in groups["appearance"] if TAXONOMY[n].kind != "bool"]
    rng.shuffle(appearance)
    pairs = _open(appearance[:3], values, "appearance")
    pairs += _open(groups["emotion"], values, "emotion")
    if groups["action"]:
        q = rng.choice(["What is the person doing with their face?", "Describe the person's facial action."])
        answer = " ".join(statement(n, values[n], values) for n in groups["action"])
        pairs.append({"q": q, "a": answer, "kind": "action"})
    pairs += _yes_no(values, rng, YES_NO_PER_IMAGE)
    pairs += _reasoning(values, rng)
    body = pairs[:]
    rng.shuffle(body)
    qa = body + _dialog(values, rng)
    for pair in qa:
        assert not contradictions(pair["a"], values), (pair, contradictions(pair["a"], values))
    return qa
