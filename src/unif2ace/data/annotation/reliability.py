"""Which annotated attributes are reliable enough for captions and VQA (measured on the gold set).

``UNRELIABLE`` lists the gold-measured attributes whose held-out balanced accuracy is below
:data:`unif2ace.data.annotation.gold.RELIABLE_AT` (see the table in ``docs/annotation.md``;
``tests/unit/data/test_gold_accuracy.py`` recomputes it from the committed records and gold labels).
Attributes the gold set does not cover (head pose, face shape, background ...) are *unverified*: kept, and
listed in :data:`UNVERIFIED` so users can drop them too.
"""

from __future__ import annotations

UNRELIABLE = frozenset({"age", "hair_color", "hair_length", "bangs", "bald", "skin_tone", "hat", "earrings", "makeup"})
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
