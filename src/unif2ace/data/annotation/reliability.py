"""Which annotated attributes are reliable enough for captions and VQA (measured on the gold set).

``UNRELIABLE`` lists the gold-measured attributes whose held-out balanced accuracy is below
:data:`unif2ace.data.annotation.gold.RELIABLE_AT` (see ``data/gold/report.json`` and the table in
``docs/data.md``; ``tests/unit/data/test_gold_accuracy.py`` recomputes it from the committed records and gold labels).
``UNRELIABLE_VALUES`` lists the values of the *reliable* attributes that are still not stated: predicted with
gold precision below ``RELIABLE_AT`` or too rarely to tell (:func:`unif2ace.data.annotation.gold.unreliable_values`;
e.g. a predicted beard was right on 9 of 39 gold faces, so captions say "no beard" but never "a beard").
Attributes the gold set does not cover (head pose, face shape, background ...) are *unverified*: kept, and
listed in :data:`UNVERIFIED` so users can drop them too.
"""

from __future__ import annotations

UNRELIABLE = frozenset({"age", "hair_color", "hair_length", "bangs", "bald", "skin_tone", "hat", "earrings", "makeup"})
UNRELIABLE_VALUES = frozenset(
    {
        ("beard", True),
        ("mustache", True),
        ("sunglasses", True),
        ("emotion", "angry"),
        ("emotion", "contempt"),
        ("emotion", "disgust"),
        ("emotion", "fear"),
        ("emotion", "sad"),
        ("emotion", "surprise"),
    }
)
UNVERIFIED = frozenset(
    {
        "eyes_closed",
        "head_pose",
        "head_tilt",
        "face_shape",
        "eyebrow_shape",
        "background_brightness",
        "background_color",
    }
)
