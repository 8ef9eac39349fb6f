"""Fine-grained captions from face attributes (spec §7.1 step 2, §7.3 record format).

UniF²aceD-1M captions come from GPT-4o combined with an attribute classifier (120 tokens, 17.7 attributes per
caption). Offline we write them from the annotated attributes with templates: several phrasings per attribute and
per sentence, a shuffled sentence order, and a seed per (run seed, record id), so the same record always gets the
same caption and different records read differently. Only attributes that are known, reliable
(:data:`~unif2ace.data.annotation.reliability.UNRELIABLE` excluded) and confident enough are stated, and every
stated value is checked with the phrase matcher (:func:`~unif2ace.data.annotation.taxonomy.mentions`), so a
caption never contradicts its record. An optional refiner (``unif2ace.data.refine``) may paraphrase it afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unif2ace.data.annotation.reliability import UNRELIABLE, UNRELIABLE_VALUES
from unif2ace.data.annotation.taxonomy import TAXONOMY, contradictions, mentions

MIN_CONFIDENCE = 0.55
"""Attributes predicted with less confidence are left out of captions and VQA."""


@dataclass
class Caption:
    """A caption and the attributes it states.

    Attributes:
        text: the caption.
        mentioned: attribute name -> the value it states.
    """

    text: str
    mentioned: dict[str, Any] = field(default_factory=dict)


def usable_attributes(
    attributes: dict[str, dict[str, Any]],
    exclude: frozenset[str] = UNRELIABLE,
    min_confidence: float = MIN_CONFIDENCE,
    exclude_values: frozenset[tuple[str, Any]] = UNRELIABLE_VALUES,
) -> dict[str, Any]:
    """``name -> value`` of the record's attributes that captions and VQA may state.

    Args:
        attributes: the record's attributes (``name -> {"value", "confidence", ...}``).
        exclude: attributes never stated (default: the gold-measured unreliable ones).
        min_confidence: attributes predicted with less confidence are left out.
        exclude_values: ``(name, value)`` pairs never stated (default: imprecise values of reliable attributes).
    """
    out = {}
    for name, attr in attributes.items():
        if name not in TAXONOMY or name in exclude or (name, attr["value"]) in exclude_values:
            continue
        if attr.get("confidence", 1.0) >= min_confidence:
            out[name] = attr["value"]
    return out


class _Person:
    """Pronouns and nouns for the subject (gender-neutral when gender is unknown)."""

    def __init__(self, gender: Any) -> None:
        self.noun = {"male": "man", "female": "woman"}.get(gender, "person")
        self.subj = {"male": "he", "female": "she"}.get(gender, "the person")
        self.poss = {"male": "his", "female": "her"}.get(gender, "their")

    def cap(self, word: str) -> str:
        return word[0].upper() + word[1:]


Sentence = tuple[str, dict[str, Any]]


def _opening(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence:
    said: dict[str, Any] = {}
    if "gender" in v:
        said["gender"] = v["gender"]
    noun = f"a {p.noun}"
    pose = ""
    if "head_pose" in v:
        said["head_pose"] = v["head_pose"]
        pose = {
            "frontal": rng.choice([" facing the camera", " looking straight at the camera"]),
            "turned_left": f" with {p.poss} head turned to the left",
            "turned_right": f" with {p.poss} head turned to the right",
        }[v["head_pose"]]
    bg = ""
    if "background_brightness" in v or "background_color" in v:
        words = [w for w in (_bright(v), _bg_colour(v)) if w]
        said.update({k: v[k] for k in ("background_brightness", "background_color") if k in v})
        bg = rng.choice([", set against a {} background", ", photographed in front of a {} background"])
        bg = bg.format(", ".join(words))
    start = rng.choice(["A close-up portrait of", "This photo shows", "The image is a head-and-shoulders shot of"])
    return f"{start} {noun}{pose}{bg}.", said


def _bright(v: dict[str, Any]) -> str:
    return {"dark": "dark", "medium": "mid-toned", "bright": "bright"}.get(v.get("background_brightness"), "")


def _bg_colour(v: dict[str, Any]) -> str:
    return v.get("background_color", "")


def _shape(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    parts, said = [], {}
    if "face_shape" in v:
        parts.append(rng.choice(TAXONOMY["face_shape"].phrases[v["face_shape"]]))
        said["face_shape"] = v["face_shape"]
    if "eyebrow_shape" in v:
        parts.append(TAXONOMY["eyebrow_shape"].phrases[v["eyebrow_shape"]][0])
        said["eyebrow_shape"] = v["eyebrow_shape"]
    if not parts:
        return None
    join = rng.choice([" with ", " and "]) if len(parts) == 2 else ""
    return f"{p.cap(p.subj)} has {join.join(parts)}.", said


def _hair(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    if v.get("bald") is True:
        return f"{p.cap(p.subj)} has a bald head.", {"bald": True}
    words = [TAXONOMY["hair_length"].phrases[v["hair_length"]][0].split(" hair")[0] if "hair_length" in v else ""]
    words += [v.get("hair_type", ""), v["hair_color"] if "hair_color" in v else ""]
    said = {k: v[k] for k in ("hair_length", "hair_type", "hair_color") if k in v}
    if v.get("hair_color") == "other":
        words[-1] = "dyed"
    if not said:
        return None
    text = f"{p.cap(p.subj)} has {' '.join(w for w in words if w)} hair"
    if "bangs" in v:
        said["bangs"] = v["bangs"]
        text += " with bangs" if v["bangs"] else " and no bangs"
    return text + ".", said


def _facial_hair(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    beard, moustache = v.get("beard"), v.get("mustache")
    if beard is False and moustache is False:
        return rng.choice([f"{p.cap(p.subj)} is clean-shaven.", f"{p.cap(p.poss)} face is clean-shaven."]), {
            "beard": False,
            "mustache": False,
        }
    said = {k: v[k] for k in ("beard", "mustache") if k in v}
    if not said:
        return None
    items = []
    if beard is not None:
        items.append("a beard" if beard else "no beard")
    if moustache is not None:
        items.append("a moustache" if moustache else "a bare upper lip")
    return f"{p.cap(p.subj)} has {' and '.join(items)}.", said


def _accessories(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    wear, bare, said = [], [], {}
    for name in ("sunglasses", "eyeglasses", "hat", "earrings", "necklace", "mask"):
        if name not in v or (name == "eyeglasses" and v.get("sunglasses") is True):
            continue  # sunglasses already say it
        if name == "sunglasses" and v[name] is False and v.get("eyeglasses") is False:
            continue  # "no glasses" covers it
        said[name] = v[name]
        (wear if v[name] else bare).append(name)
    if not said:
        return None
    pos = [rng.choice(TAXONOMY[n].phrases[True]) for n in wear]
    neg = [TAXONOMY[n].phrases[False][0] for n in bare]
    if pos and neg:
        text = f"{p.cap(p.subj)} wears {_and(pos)}, with {_and(neg)}"
    elif pos:
        text = f"{p.cap(p.subj)} is wearing {_and(pos)}"
    else:
        text = rng.choice([f"{p.cap(p.subj)} wears {_and(neg)}", f"There are {_and(neg)} on {p.poss} face"])
        if any(n in ("hat", "earrings", "necklace") for n in bare):
            text = f"{p.cap(p.subj)} wears {_and(neg)}"
    return text + ".", said


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _skin(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    said = {k: v[k] for k in ("skin_tone", "skin_texture") if k in v}
    if not said:
        return None
    parts = [rng.choice(TAXONOMY[k].phrases[v[k]]) for k in said]
    return f"{p.cap(p.subj)} has {' and '.join(parts)}.", said


def _expression(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    said = {k: v[k] for k in ("smile", "mouth_open", "eyes_closed", "emotion") if k in v}
    if not said:
        return None
    head = {True: rng.choice(["is smiling", "smiles warmly"]), False: "is not smiling"}.get(v.get("smile"), "")
    details = []
    if "mouth_open" in v:
        details.append(rng.choice(["parted lips", "the mouth slightly open"]) if v["mouth_open"] else "closed lips")
    if "eyes_closed" in v:
        details.append("the eyes closed" if v["eyes_closed"] else "the eyes open")
    text = f"{p.cap(p.subj)} {head or 'is photographed'}"
    if details:
        text += f", with {_and(details)}"
    if "emotion" in v:
        feel = rng.choice(TAXONOMY["emotion"].phrases[v["emotion"]])
        tail = rng.choice([", and looks {}", ", and appears {}", "; the overall expression reads as {}"])
        text += tail.format(feel)
    return text + ".", said


def _pose_detail(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    if "head_tilt" not in v:
        return None
    text = {"level": "{} head is held level", "tilted": "{} head is tilted to one side"}[v["head_tilt"]]
    return text.format(p.cap(p.poss)) + rng.choice([".", " in the frame."]), {"head_tilt": v["head_tilt"]}


_MOOD = {
    "happy": ("a relaxed, friendly mood", "that the moment is a pleasant one", "an easy-going, approachable manner"),
    "neutral": ("a composed, attentive moment", "quiet concentration", "a steady, unhurried manner"),
    "surprise": ("that something unexpected has caught {poss} attention",),
    "sad": ("a subdued, pensive mood",),
    "angry": ("tension or irritation",),
    "fear": ("unease",),
    "disgust": ("distaste at something nearby",),
    "contempt": ("a sceptical attitude",),
}


def _impression(v: dict[str, Any], p: _Person, rng: random.Random) -> Sentence | None:
    """An inferred overall impression (the paper's "reasoning" step); states no attribute of its own."""
    if "emotion" not in v:
        return None
    mood = rng.choice(_MOOD[v["emotion"]]).format(poss=p.poss)
    start = rng.choice(["Overall, the expression suggests", "Taken together, the face suggests", "The look conveys"])
    return f"{start} {mood}.", {}


_BODY: tuple[Callable[[dict[str, Any], _Person, random.Random], Sentence | None], ...] = (
    _shape,
    _hair,
    _facial_hair,
    _accessories,
    _skin,
    _pose_detail,
)


def write_caption(values: dict[str, Any], seed: int | str = 0) -> Caption:
    """A caption stating ``values`` (``name -> value``, already filtered by :func:`usable_attributes`).

    Args:
        values: attributes to state.
        seed: phrasing seed (use ``f"{run_seed}:{record_id}"`` for per-record variety).

    Returns:
        The caption and the attributes it states.
    """
    rng = random.Random(str(seed))
    person = _Person(values.get("gender"))
    opening = _opening(values, person, rng)
    body = [s for s in (f(values, person, rng) for f in _BODY) if s]
    rng.shuffle(body)
    expression = _expression(values, person, rng)
    if expression:
        body.insert(rng.randrange(len(body) + 1), expression)
    sentences = [opening, *body, *[s for s in (_impression(values, person, rng),) if s]]
    mentioned: dict[str, Any] = {}
    for _, said in sentences:
        mentioned.update(said)
    text = " ".join(s for s, _ in sentences)
    assert not contradictions(text, values), contradictions(text, values)
    return Caption(text, mentioned)


def caption_record(attributes: dict[str, dict[str, Any]], seed: int | str = 0) -> Caption:
    """:func:`write_caption` over the record's usable attributes."""
    return write_caption(usable_attributes(attributes), seed)


def stated(text: str, names: list[str]) -> dict[str, set[Any]]:
    """The values ``text`` states for ``names`` (the phrase matcher)."""
    return mentions(text, names)


def text_problems(text: str, attributes: dict[str, dict[str, Any]]) -> list[str]:
    """Everything ``text`` states that its record does not back (the caption / VQA checker).

    Stricter than :func:`~unif2ace.data.annotation.taxonomy.contradictions`: a text may state only attributes
    that captions may use (:func:`usable_attributes`: known, reliable, confident), each with the record's value.

    Args:
        text: a caption or an answer.
        attributes: the record's attributes (``name -> {"value", "confidence", ...}``).

    Returns:
        one line per problem, e.g. ``"hair_color: text says 'black', record says 'brown'"`` or
        ``"hat: text says True, record has no usable value"``; empty when the text is consistent.
    """
    usable = usable_attributes(attributes)
    out = []
    for name, values in sorted(mentions(text).items()):
        for value in sorted(values, key=str):
            if name not in usable:
                out.append(f"{name}: text says {value!r}, record has no usable value")
            elif value != usable[name]:
                out.append(f"{name}: text says {value!r}, record says {usable[name]!r}")
    return out


WRITER = "templates@1"


def caption_records(
    records_file: str, seed: int = 0, refiner: Any | None = None, redo: bool = False, progress: bool = True
) -> dict[str, int]:
    """Write caption + VQA into every annotated record of a records file (atomic rewrite, resumable).

    ``provenance["caption"]`` records the writer, seed, refiner, whether the refinement was accepted and which
    attributes the caption states; records already captioned with the same writer, seed and refiner are skipped
    unless ``redo``.

    Args:
        records_file: ``.jsonl`` / ``.json`` / ``.parquet`` records (run ``unif2ace data annotate`` first).
        seed: phrasing seed.
        refiner: optional :class:`unif2ace.data.refine.Refiner`.
        redo: caption everything again.
        progress: show a progress bar.

    Returns:
        ``{"captioned", "skipped", "refined", "no_attributes"}`` counts.
    """
    from tqdm import tqdm

    from unif2ace.data.records import read_records, write_records
    from unif2ace.data.refine import refine_caption
    from unif2ace.data.vqa import write_vqa

    records = read_records(records_file)
    how = {"writer": WRITER, "seed": seed, "refiner": getattr(refiner, "name", "none")}
    counts = {"captioned": 0, "skipped": 0, "refined": 0, "no_attributes": 0}
    for rec in tqdm(records, desc="caption", disable=not progress):
        done = rec.provenance.get("caption", {})
        if not redo and rec.caption and all(done.get(k) == v for k, v in how.items()):
            counts["skipped"] += 1
            continue
        values = usable_attributes(rec.attributes)
        if not values:
            counts["no_attributes"] += 1
            continue
        cap = write_caption(values, f"{seed}:{rec.id}")
        text, accepted = refine_caption(refiner, cap.text, cap.mentioned, values) if refiner else (cap.text, False)
        rec.caption, rec.vqa = text, write_vqa(values, f"{seed}:{rec.id}")
        rec.provenance = {**rec.provenance, "caption": {**how, "accepted": accepted, "mentions": sorted(cap.mentioned)}}
        counts["captioned"] += 1
        counts["refined"] += accepted
    write_records(records_file, records)
    return counts


def approx_tokens(text: str) -> int:
    """Rough BPE token count: words plus punctuation marks (GPT-2 BPE gives about the same for plain English)."""
    import re

    return len(re.findall(r"\w+|[^\w\s]", text))
