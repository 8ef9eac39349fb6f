"""``unif2ace data ...``: build and check face corpora. Add a subcommand with one ``_add_*`` function."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from unif2ace.data.records import FaceRecord, write_records
    from unif2ace.data.splits import assign_splits
    from unif2ace.data.synth import synthesize_faces

    start = time.perf_counter()
    entries = synthesize_faces(
        args.n,
        args.out,
        size=args.size,
        psi=args.psi,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    records = [
        FaceRecord(
            id=e.id,
            image=e.file,
            source="synth",
            identity=e.id,
            provenance={"seed": e.seed, "psi": e.psi, "generator": e.generator, "weights_sha256": e.weights_sha256},
        )
        for e in entries
    ]
    records_file = Path(args.out) / "records.jsonl"
    if not records_file.exists():  # keep annotations of an existing corpus
        write_records(records_file, assign_splits(records, args.val, args.test, seed=args.seed))
    print(f"{len(entries)} faces in {args.out} ({seconds:.1f} s this run); records: {records_file}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from unif2ace.data.validate import validate_records

    problems = validate_records(args.records, check_images=not args.no_images)
    for p in problems:
        print(p)
    print(f"{args.records}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="synthesise photoreal faces (MobileStyleGAN via OpenVINO), resumable")
    p.add_argument("--n", type=int, required=True, help="number of faces")
    p.add_argument("--size", type=int, default=256, help="output size in pixels (default 256)")
    p.add_argument("--psi", type=float, default=0.8, help="truncation psi (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="run seed (per-image seeds derive from it)")
    p.add_argument("--out", required=True, help="output folder (images/, manifest.jsonl, records.jsonl)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--val", type=float, default=0.1, help="validation fraction of identities")
    p.add_argument("--test", type=float, default=0.1, help="test fraction of identities")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check a records file: schema, images, duplicates, split leakage")
    p.add_argument("records", help="records file (.jsonl / .json / .parquet)")
    p.add_argument("--no-images", action="store_true", help="skip opening images")
    p.set_defaults(func=_validate)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``data`` and its subcommands."""
    data = sub.add_parser("data", help="build and check face corpora")
    inner = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for add in (_add_synth, _add_validate):
        add(inner)
