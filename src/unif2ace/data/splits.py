"""Identity-disjoint train / val / test splits (a face identity never appears in two splits)."""

from __future__ import annotations

import random

from unif2ace.data.records import FaceRecord


def assign_splits(records: list[FaceRecord], val: float = 0.1, test: float = 0.1, seed: int = 0) -> list[FaceRecord]:
    """Set ``record.split`` by identity (records without one are their own identity), seeded.

    Args:
        records: records to split (modified in place and returned).
        val: fraction of identities for validation.
        test: fraction of identities for test.
        seed: shuffling seed.

    Raises:
        ValueError: fractions outside [0, 1) or summing to >= 1.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"split fractions must be in [0, 1) and sum below 1 (val={val}, test={test})")
    identities = sorted({r.identity or r.id for r in records})
    random.Random(seed).shuffle(identities)
    n_test, n_val = round(len(identities) * test), round(len(identities) * val)
    split_of = {ident: "test" for ident in identities[:n_test]}
    split_of.update({ident: "val" for ident in identities[n_test : n_test + n_val]})
    for r in records:
        r.split = split_of.get(r.identity or r.id, "train")
    return records
