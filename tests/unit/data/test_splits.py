"""Identity-disjoint, seeded train / val / test splits."""

from __future__ import annotations

import pytest

from unif2ace.data.records import FaceRecord
from unif2ace.data.splits import assign_splits


def _records(n: int, per_identity: int = 3) -> list[FaceRecord]:
    return [FaceRecord(id=f"r{i}", image=f"{i}.png", identity=f"p{i // per_identity}") for i in range(n)]


def _split_of_identity(records: list[FaceRecord]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in records:
        out.setdefault(r.identity_key, set()).add(r.split)
    return out


def test_identity_disjoint_with_requested_fractions():
    recs = assign_splits(_records(300), val=0.1, test=0.2, seed=3)
    by_identity = _split_of_identity(recs)
    assert all(len(s) == 1 for s in by_identity.values())
    counts = {s: sum(1 for v in by_identity.values() if v == {s}) for s in ("train", "val", "test")}
    assert counts == {"train": 70, "val": 10, "test": 20}  # of 100 identities


def test_seeded_and_records_without_identity_are_their_own():
    a = [r.split for r in assign_splits(_records(90), 0.2, 0.2, seed=1)]
    b = [r.split for r in assign_splits(_records(90), 0.2, 0.2, seed=1)]
    c = [r.split for r in assign_splits(_records(90), 0.2, 0.2, seed=2)]
    assert a == b and a != c
    loose = [FaceRecord(id=f"x{i}", image="x.png") for i in range(50)]
    splits = [r.split for r in assign_splits(loose, 0.2, 0.2, seed=0)]
    assert splits.count("val") == 10 and splits.count("test") == 10


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0)])
def test_bad_fractions(val, test):
    with pytest.raises(ValueError, match="split fractions"):
        assign_splits(_records(10), val=val, test=test)
