"""The face-attribute taxonomy (spec §7.1 wheel, §7.2 CelebV-HQ labels) and the attribute phrase matcher.

UniF²aceD-1M annotates 46 attribute categories grouped as *appearance* (hair, beard, accessories, skin, others),
*action* and *emotion*. We keep the same three groups and sub-categories and list 46 attributes, each with a value
type (``bool`` / ``enum`` / ``ordinal``), its allowed values, caption phrasings and question templates.

The phrase matcher (:func:`mentions`) finds which attribute values a text states, from per-value regular
expressions ("cues"). Within one attribute overlapping matches are resolved longest-first, so "no glasses" wins
over "glasses". Captions, VQA answers and refined captions are all checked with it: a text *contradicts* a record
when it states a value of an attribute other than the record's value (:func:`contradictions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("appearance", "action", "emotion")
BOOL = (True, False)


@dataclass(frozen=True)
class Attribute:
    """One attribute category.

    Attributes:
        name: key in ``FaceRecord.attributes``.
        group: ``appearance`` | ``action`` | ``emotion``.
        category: wheel sub-category (``hair``, ``beard``, ``accessories``, ``skin``, ``others``, ``action``, ...).
        kind: ``bool`` | ``enum`` | ``ordinal`` (ordinal values are listed low to high).
        values: allowed values.
        phrases: value -> caption phrasings (noun or verb phrases completing "The person has/is ...").
        cues: value -> regular expressions that state the value in free text (matched case-insensitively).
        question: open question whose answer is the value (enum / ordinal) or the yes/no question (bool).
        noun: what the value describes, for "Is the {noun} {value}?" questions (enum / ordinal).
    """

    name: str
    group: str
    category: str
    kind: str
    values: tuple[Any, ...]
    phrases: dict[Any, tuple[str, ...]] = field(default_factory=dict)
    cues: dict[Any, tuple[str, ...]] = field(default_factory=dict)
    question: str = ""
    noun: str = ""

    def __post_init__(self) -> None:
        assert self.group in GROUPS and self.kind in ("bool", "enum", "ordinal"), self.name
        assert set(self.phrases) <= set(self.values) and set(self.cues) <= set(self.values), self.name

    def word(self, value: Any) -> str:
        """The plain word for an enum/ordinal value (``middle_aged`` -> ``middle-aged``)."""
        return str(value).replace("_", "-" if value == "middle_aged" else " ")


def _b(
    name: str,
    category: str,
    yes: tuple[str, ...],
    no: tuple[str, ...],
    cy: tuple,
    cn: tuple,
    q: str,
    group="appearance",
):
    return Attribute(name, group, category, "bool", BOOL, {True: yes, False: no}, {True: cy, False: cn}, q)


def _e(name, category, kind, phrases, cues, question, noun, group="appearance"):
    return Attribute(name, group, category, kind, tuple(phrases), phrases, cues, question, noun)


_BG = r"(?:[a-z-]+ )?background"
_HAIR = r"(?:[a-z-]+,? ){0,2}hair(?:ed)?\b"
_TAXONOMY: tuple[Attribute, ...] = (
    # ---------------- appearance / hair
    _e(
        "hair_color",
        "hair",
        "enum",
        {
            "black": ("black hair", "jet-black hair", "dark black hair"),
            "brown": ("brown hair", "chestnut-brown hair"),
            "blond": ("blond hair", "fair, golden hair"),
            "red": ("red hair", "auburn hair"),
            "gray": ("gray hair", "silver-gray hair", "white-gray hair"),
            "other": ("dyed hair in an unusual colour",),
        },
        {
            "black": (rf"\b(?:jet-)?black {_HAIR}", r"\bdark black hair"),
            "brown": (rf"\b(?:chestnut-)?brown {_HAIR}", r"\bbrunette\b"),
            "blond": (rf"\bblonde? {_HAIR}", r"\bgolden hair", r"\bblonde\b"),
            "red": (rf"\b(?:red|auburn|ginger) {_HAIR}", r"\bredhead\b"),
            "gray": (rf"\b(?:silver-|white-)?gr[ae]y {_HAIR}", rf"\bwhite {_HAIR}", rf"\bsilver {_HAIR}"),
            "other": (r"\bunusual colou?r\b", rf"\b(?:blue|green|pink|purple) {_HAIR}"),
        },
        "What colour is the person's hair?",
        "hair colour",
    ),
    _e(
        "hair_length",
        "hair",
        "ordinal",
        {
            "short": ("short hair", "cropped hair"),
            "medium": ("medium-length hair", "chin-to-shoulder-length hair"),
            "long": ("long hair", "hair falling past the shoulders"),
        },
        {
            "short": (rf"\bshort(?:-cut)?,? {_HAIR}", rf"\bcropped {_HAIR}"),
            "medium": (
                rf"\bmedium-length,? {_HAIR}",
                rf"\bchin-to-shoulder-length {_HAIR}",
                rf"\bshoulder-length {_HAIR}",
            ),
            "long": (rf"\blong,? {_HAIR}", r"\bpast the shoulders"),
        },
        "How long is the person's hair?",
        "hair length",
    ),
    _e(
        "hair_type",
        "hair",
        "enum",
        {"straight": ("straight hair",), "wavy": ("wavy hair",), "curly": ("curly hair",)},
        {
            "straight": (rf"\bstraight,? {_HAIR}",),
            "wavy": (rf"\bwavy,? {_HAIR}",),
            "curly": (rf"\bcurly,? {_HAIR}", r"\bcurls\b"),
        },
        "Is the person's hair straight, wavy or curly?",
        "hair texture",
    ),
    _b(
        "receding_hairline",
        "hair",
        ("a receding hairline",),
        ("a full hairline",),
        (r"\breceding hairline",),
        (r"\bfull hairline",),
        "Does the person have a receding hairline?",
    ),
    _b(
        "bangs",
        "hair",
        ("bangs", "a fringe over the forehead"),
        ("an uncovered forehead with no bangs",),
        (r"\bbangs\b", r"\bfringe\b"),
        (r"\bno bangs\b", r"\bwithout bangs\b", r"\bno fringe\b"),
        "Does the person have bangs?",
    ),
    _b(
        "bald",
        "hair",
        ("a bald head",),
        ("a full head of hair",),
        (r"\bbald(?:ing)?\b", r"\bshaved head"),
        (r"\bnot bald\b", r"\bfull head of hair"),
        "Is the person bald?",
    ),
    # ---------------- appearance / beard
    _b(
        "beard",
        "beard",
        ("a beard",),
        ("no beard",),
        (r"\bbeard(?:ed)?\b", r"\bgoatee\b"),
        (r"\bclean-shaven\b", r"\bno beard\b", r"\bbeardless\b"),
        "Does the person have a beard?",
    ),
    _b(
        "five_o_clock_shadow",
        "beard",
        ("a five o'clock shadow",),
        ("smooth, stubble-free cheeks",),
        (r"\bfive o'clock shadow", r"\bstubble\b"),
        (r"\bstubble-free\b",),
        "Does the person have stubble?",
    ),
    _b(
        "sideburns",
        "beard",
        ("sideburns",),
        ("no sideburns",),
        (r"(?<!no )\bsideburns\b",),
        (r"\bno sideburns\b",),
        "Does the person have sideburns?",
    ),
    _b(
        "mustache",
        "beard",
        ("a moustache",),
        ("a bare upper lip",),
        (r"\bmoustache\b", r"\bmustache\b"),
        (r"\bclean-shaven\b", r"\bbare upper lip", r"\bno m(?:o)?ustache\b"),
        "Does the person have a moustache?",
    ),
    _b(
        "goatee",
        "beard",
        ("a goatee",),
        ("no goatee",),
        (r"(?<!no )\bgoatee\b",),
        (r"\bno goatee\b",),
        "Does the person have a goatee?",
    ),
    # ---------------- appearance / accessories
    _b(
        "eyeglasses",
        "accessories",
        ("glasses", "a pair of glasses"),
        ("no glasses",),
        (r"(?<!no )\b(?:eye)?glasses\b", r"\bspectacles\b"),
        (r"\bno (?:eye)?glasses\b", r"\bwithout (?:eye)?glasses\b"),
        "Is the person wearing glasses?",
    ),
    _b(
        "sunglasses",
        "accessories",
        ("sunglasses", "dark sunglasses"),
        ("no sunglasses",),
        (r"(?<!no )\bsunglasses\b", r"\bshades\b"),
        (r"\bno sunglasses\b", r"\bwithout sunglasses\b"),
        "Is the person wearing sunglasses?",
    ),
    _b(
        "hat",
        "accessories",
        ("a hat", "a head covering"),
        ("no hat", "an uncovered head"),
        (r"(?<!no )\bhat\b", r"\bcap\b", r"\bbeanie\b", r"\bhead covering\b", r"\bheadscarf\b"),
        (r"\bno hat\b", r"\buncovered head\b", r"\bwithout a hat\b"),
        "Is the person wearing a hat?",
    ),
    _b(
        "earrings",
        "accessories",
        ("earrings",),
        ("no earrings",),
        (r"(?<!no )\bearrings?\b",),
        (r"\bno earrings\b", r"\bwithout earrings\b"),
        "Is the person wearing earrings?",
    ),
    _b(
        "necklace",
        "accessories",
        ("a necklace",),
        ("no necklace",),
        (r"(?<!no )\bnecklace\b",),
        (r"\bno necklace\b",),
        "Is the person wearing a necklace?",
    ),
    _b(
        "necktie",
        "accessories",
        ("a necktie",),
        ("no tie",),
        (r"\bnecktie\b", r"(?<!no )\btie\b"),
        (r"\bno tie\b",),
        "Is the person wearing a tie?",
    ),
    _b(
        "mask",
        "accessories",
        ("a face mask",),
        ("no face mask",),
        (r"(?<!no )\bface mask\b",),
        (r"\bno face mask\b",),
        "Is the person wearing a face mask?",
    ),
    # ---------------- appearance / skin
    _e(
        "skin_tone",
        "skin",
        "ordinal",
        {
            "light": ("light skin", "fair skin"),
            "medium": ("medium skin", "olive, medium-toned skin"),
            "dark": ("dark skin", "deep brown skin"),
        },
        {
            "light": (r"\b(?:light|fair|pale) skin", r"\blight-skinned\b"),
            "medium": (r"\bmedium(?:-toned)? skin", r"\bolive\b", r"\btan(?:ned)? skin"),
            "dark": (r"\bdark skin", r"\bdeep brown skin", r"\bdark-skinned\b"),
        },
        "What is the person's skin tone?",
        "skin tone",
    ),
    _e(
        "skin_texture",
        "skin",
        "enum",
        {"smooth": ("smooth skin",), "wrinkled": ("wrinkled skin", "lined skin")},
        {"smooth": (r"\bsmooth skin",), "wrinkled": (r"\bwrinkl", r"\blined skin")},
        "Is the person's skin smooth or wrinkled?",
        "skin texture",
    ),
    _b(
        "rosy_cheeks",
        "skin",
        ("rosy cheeks",),
        ("even-toned cheeks",),
        (r"\brosy cheeks",),
        (r"\beven-toned cheeks",),
        "Does the person have rosy cheeks?",
    ),
    # ---------------- appearance / others
    _b(
        "makeup",
        "others",
        ("visible makeup", "lipstick"),
        ("no visible makeup",),
        (r"(?<!no visible )\bmakeup\b", r"\blipstick\b"),
        (r"\bno visible makeup\b", r"\bno makeup\b"),
        "Is the person wearing makeup?",
    ),
    _e(
        "gender",
        "others",
        "enum",
        {"male": ("man",), "female": ("woman",)},
        {
            "male": (r"\b(?:man|male|gentleman|boy|he|his|him|himself)\b",),
            "female": (r"\b(?:woman|female|lady|girl|she|her|hers|herself)\b",),
        },
        "Is the person a man or a woman?",
        "gender",
    ),
    _e(
        "age",
        "others",
        "ordinal",
        {
            "child": ("a child",),
            "teen": ("a teenager",),
            "young_adult": ("a young adult",),
            "middle_aged": ("middle-aged",),
            "senior": ("elderly",),
        },
        {
            "child": (r"\b(?:child|kid|toddler|little (?:boy|girl)|young (?:boy|girl))\b",),
            "teen": (r"\bteen(?:ager|age)?\b", r"\badolescent\b"),
            "young_adult": (r"\byoung adult\b", r"\byoung (?:man|woman)\b", r"\bin (?:his|her|their) twenties\b"),
            "middle_aged": (r"\bmiddle-aged\b",),
            "senior": (r"\belderly\b", r"\bsenior\b", r"\bolder (?:man|woman|person)\b"),
        },
        "About how old is the person?",
        "age group",
    ),
    _e(
        "face_shape",
        "others",
        "enum",
        {
            "oval": ("an oval face",),
            "round": ("a round face",),
            "square": ("a square face",),
            "long": ("a long, narrow face",),
            "heart": ("a heart-shaped face",),
        },
        {
            "oval": (r"\boval face",),
            "round": (r"\bround face",),
            "square": (r"\bsquare face", r"\bsquare jaw"),
            "long": (r"\blong, narrow face", r"\belongated face"),
            "heart": (r"\bheart-shaped face",),
        },
        "What shape is the person's face?",
        "face shape",
    ),
    _e(
        "eyebrow_shape",
        "others",
        "enum",
        {"arched": ("arched eyebrows",), "straight": ("straight eyebrows",)},
        {"arched": (r"\barched (?:eye)?brows",), "straight": (r"\bstraight (?:eye)?brows", r"\bflat (?:eye)?brows")},
        "Are the person's eyebrows arched or straight?",
        "eyebrow shape",
    ),
    _b(
        "bushy_eyebrows",
        "others",
        ("bushy eyebrows",),
        ("thin eyebrows",),
        (r"\bbushy (?:eye)?brows",),
        (r"\bthin (?:eye)?brows",),
        "Does the person have bushy eyebrows?",
    ),
    _b(
        "big_nose",
        "others",
        ("a prominent nose",),
        ("a small nose",),
        (r"\bprominent nose", r"\bbig nose"),
        (r"\bsmall nose",),
        "Does the person have a big nose?",
    ),
    _b(
        "pointy_nose",
        "others",
        ("a pointed nose",),
        ("a rounded nose tip",),
        (r"\bpointed nose", r"\bpointy nose"),
        (r"\brounded nose",),
        "Does the person have a pointed nose?",
    ),
    _b(
        "big_lips",
        "others",
        ("full lips",),
        ("thin lips",),
        (r"\bfull lips", r"\bbig lips"),
        (r"\bthin lips",),
        "Does the person have full lips?",
    ),
    _b(
        "narrow_eyes",
        "others",
        ("narrow eyes",),
        ("wide-open eyes",),
        (r"\bnarrow eyes",),
        (r"\bwide-open eyes",),
        "Does the person have narrow eyes?",
    ),
    _b(
        "bags_under_eyes",
        "others",
        ("bags under the eyes",),
        ("smooth under-eye skin",),
        (r"\bbags under",),
        (r"\bsmooth under-eye",),
        "Does the person have bags under the eyes?",
    ),
    _b(
        "double_chin",
        "others",
        ("a double chin",),
        ("a defined jawline",),
        (r"\bdouble chin",),
        (r"\bdefined jawline",),
        "Does the person have a double chin?",
    ),
    _b(
        "high_cheekbones",
        "others",
        ("high cheekbones",),
        ("soft cheekbones",),
        (r"\bhigh cheekbones",),
        (r"\bsoft cheekbones",),
        "Does the person have high cheekbones?",
    ),
    _e(
        "head_pose",
        "others",
        "enum",
        {
            "frontal": ("facing the camera",),
            "turned_left": ("the head turned to the left",),
            "turned_right": ("the head turned to the right",),
        },
        {
            "frontal": (r"\bfacing the camera", r"\blooking straight (?:at|into) the camera"),
            "turned_left": (r"\bturned to (?:the|their|his|her) left",),
            "turned_right": (r"\bturned to (?:the|their|his|her) right",),
        },
        "Which way is the person's head turned?",
        "head direction",
    ),
    _e(
        "head_tilt",
        "others",
        "enum",
        {"level": ("the head held level",), "tilted": ("the head tilted to one side",)},
        {
            "level": (r"\bhead (?:is )?held level", r"\blevel head"),
            "tilted": (r"\btilted to one side", r"\bhead (?:is )?tilted"),
        },
        "Is the person's head tilted?",
        "head tilt",
    ),
    _e(
        "background_brightness",
        "others",
        "ordinal",
        {"dark": ("a dark background",), "medium": ("a mid-toned background",), "bright": ("a bright background",)},
        {
            "dark": (rf"\bdark(?:ly lit)?,? {_BG}",),
            "medium": (rf"\bmid-toned,? {_BG}",),
            "bright": (rf"\bbright,? {_BG}", rf"\blight,? {_BG}"),
        },
        "How bright is the background?",
        "background brightness",
    ),
    _e(
        "background_color",
        "others",
        "enum",
        {c: (f"a {c} background",) for c in ("neutral", "red", "orange", "yellow", "green", "blue", "purple")},
        {c: (rf"\b{c}(?:ish)? background",) for c in ("neutral", "red", "orange", "yellow", "green", "blue", "purple")},
        "What colour is the background?",
        "background colour",
    ),
    _b(
        "blurry",
        "others",
        ("a slightly blurry image",),
        ("a sharp image",),
        (r"\bblurry\b",),
        (r"\bsharp image",),
        "Is the image blurry?",
    ),
    # ---------------- action
    _b(
        "smile",
        "action",
        ("smiling",),
        ("not smiling",),
        (r"(?<!not )\bsmil(?:e|es|ing)\b",),
        (r"\bnot smiling\b", r"\bunsmiling\b", r"\bstraight-faced\b"),
        "Is the person smiling?",
        group="action",
    ),
    _b(
        "laugh",
        "action",
        ("laughing",),
        ("not laughing",),
        (r"(?<!not )\blaugh(?:s|ing)?\b",),
        (r"\bnot laughing\b",),
        "Is the person laughing?",
        group="action",
    ),
    _b(
        "mouth_open",
        "action",
        ("the mouth slightly open",),
        ("the mouth closed",),
        (r"\bmouth (?:is )?(?:slightly |wide )?open\b", r"\bparted lips\b", r"\blips parted\b"),
        (r"\bmouth (?:is )?closed\b", r"\bclosed lips\b", r"\blips (?:are )?closed\b"),
        "Is the person's mouth open?",
        group="action",
    ),
    _b(
        "eyes_closed",
        "action",
        ("the eyes closed",),
        ("the eyes open",),
        (r"\beyes (?:are )?closed\b",),
        (r"\beyes (?:are )?(?:wide )?open\b",),
        "Are the person's eyes closed?",
        group="action",
    ),
    _b(
        "glare",
        "action",
        ("glaring",),
        ("not glaring",),
        (r"(?<!not )\bglar(?:e|es|ing)\b",),
        (r"\bnot glaring\b",),
        "Is the person glaring?",
        group="action",
    ),
    _b(
        "talk",
        "action",
        ("talking",),
        ("not talking",),
        (r"(?<!not )\btalk(?:s|ing)?\b",),
        (r"\bnot talking\b",),
        "Is the person talking?",
        group="action",
    ),
    # ---------------- emotion
    _e(
        "emotion",
        "emotion",
        "enum",
        {
            "neutral": ("calm and neutral",),
            "happy": ("happy",),
            "surprise": ("surprised",),
            "sad": ("sad",),
            "angry": ("angry",),
            "fear": ("fearful",),
            "disgust": ("disgusted",),
            "contempt": ("contemptuous",),
        },
        {
            "neutral": (r"\bneutral\b(?! background)", r"\bcalm\b"),
            "happy": (r"\bhappy\b", r"\bcheerful\b", r"\bjoyful\b"),
            "surprise": (r"\bsurprised?\b", r"\bastonished\b"),
            "sad": (r"\bsad(?:ness)?\b", r"\bunhappy\b"),
            "angry": (r"\bangry\b", r"\bangr(?:il)?y\b"),
            "fear": (r"\bfearful\b", r"\bfrightened\b", r"\bafraid\b"),
            "disgust": (r"\bdisgust(?:ed)?\b",),
            "contempt": (r"\bcontempt(?:uous)?\b",),
        },
        "What emotion does the person show?",
        "emotion",
        group="emotion",
    ),
)

TAXONOMY: dict[str, Attribute] = {a.name: a for a in _TAXONOMY}
"""Attribute name -> :class:`Attribute` (46 categories)."""

_COMPILED = {a.name: {v: [re.compile(c, re.IGNORECASE) for c in cs] for v, cs in a.cues.items()} for a in _TAXONOMY}


def check_value(name: str, value: Any) -> None:
    """Raise ``ValueError`` if ``value`` is not allowed for attribute ``name``."""
    if name not in TAXONOMY:
        raise ValueError(f"unknown attribute {name!r}; known: {', '.join(TAXONOMY)}")
    if value not in TAXONOMY[name].values or (TAXONOMY[name].kind == "bool") != isinstance(value, bool):
        raise ValueError(f"attribute {name!r}: value {value!r} not in {TAXONOMY[name].values}")


def mentions(text: str, names: list[str] | None = None) -> dict[str, set[Any]]:
    """Which values of which attributes ``text`` states.

    Args:
        text: free text (caption, answer, paraphrase).
        names: attributes to look for (default: all).

    Returns:
        attribute name -> set of values stated (usually one; two means the text is self-contradictory).
    """
    found: dict[str, set[Any]] = {}
    for name in names or TAXONOMY:
        spans = []  # (start, end, value)
        for value, patterns in _COMPILED[name].items():
            spans += [(m.start(), m.end(), value) for p in patterns for m in p.finditer(text)]
        taken: list[tuple[int, int]] = []
        for start, end, value in sorted(spans, key=lambda s: s[0] - s[1]):  # longest first
            if all(end <= a or start >= b for a, b in taken):
                taken.append((start, end))
                found.setdefault(name, set()).add(value)
    return found


def contradictions(text: str, values: dict[str, Any]) -> list[str]:
    """Attributes of ``values`` (name -> true value) for which ``text`` states a different value.

    Returns:
        one line per contradiction, e.g. ``"hair_color: text says 'black', record says 'brown'"``.
    """
    out = []
    for name, stated in mentions(text, [n for n in values if n in TAXONOMY]).items():
        for value in sorted(stated - {values[name]}, key=str):
            out.append(f"{name}: text says {value!r}, record says {values[name]!r}")
    return out
