"""``unif2ace data ...``: build and check face corpora (argument plumbing only; the work is in ``unif2ace.data``).

Adding a subcommand (e.g. ``annotate`` or ``caption``) takes one function: write ``_add_<name>(sub)`` that
creates its parser with ``sub.add_parser`` and sets ``func`` (a callable taking the parsed args, returning an
exit code), and list it in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from unif2ace.data.synth import synthesize_faces, update_synth_records

    start = time.perf_counter()
    entries = synthesize_faces(
        args.n, args.out, size=args.size, psi=args.psi, seed=args.seed, workers=args.workers, progress=not args.quiet
    )
    seconds = time.perf_counter() - start
    records = update_synth_records(args.out, entries, val=args.val, test=args.test, seed=args.seed)
    print(f"{len(entries)} faces in {args.out} ({seconds:.1f} s this run); records: {records}")
    return 0


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="synthesise photoreal faces (MobileStyleGAN, OpenVINO); deterministic, resumable")
    p.add_argument("--n", type=int, required=True, help="number of faces")
    p.add_argument("--size", type=int, default=256, help="output side in pixels (default 256)")
    p.add_argument("--psi", type=float, default=0.8, help="truncation psi, >= 0.8 keeps faces diverse (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="run seed; per-image seeds derive from it and the index")
    p.add_argument("--out", required=True, help="output folder (images/, manifest.jsonl, records.jsonl)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    _add_split_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)


def _validate(args: argparse.Namespace) -> int:
    from unif2ace.data.validate import validate_records

    problems = validate_records(args.records, check_images=not args.no_images, workers=args.workers)
    for p in problems:
        print(p)
    print(f"{args.records}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check records: schema, images, duplicate ids/images, split leakage")
    p.add_argument("records", help="records file (.jsonl / .json / .parquet)")
    p.add_argument("--no-images", action="store_true", help="skip opening images")
    p.add_argument("--workers", type=int, default=4, help="threads decoding images (default 4)")
    p.set_defaults(func=_validate)


def _stats(args: argparse.Namespace) -> int:
    import json

    from unif2ace.data.stats import write_stats

    stats = write_stats(args.records, args.out, plots=not args.no_plots)
    brief = {k: stats[k] for k in ("records", "identities", "splits")}
    print(json.dumps(brief), f"-> {Path(args.out) / 'stats.json'}")
    return 0


def _add_stats(sub) -> None:
    p = sub.add_parser("stats", help="corpus statistics: stats.json + attribute / caption-length / yes-no plots")
    p.add_argument("records", help="records file (.jsonl / .json / .parquet)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-plots", action="store_true", help="only stats.json (no matplotlib needed)")
    p.set_defaults(func=_stats)


def _import(args: argparse.Namespace) -> int:
    if args.records:
        from unif2ace.data.import_records import import_records, parse_mapping

        report = import_records(
            args.records,
            args.out,
            mapping=parse_mapping(args.map),
            images_root=args.images_root,
            source=args.source,
            val=args.val,
            test=args.test,
            seed=args.seed,
        )
    else:
        from unif2ace.data.importer import ImportOptions, import_images

        options = ImportOptions(
            layout=args.layout,
            size=args.size,
            align=args.align,
            identity=args.identity,
            multi_face=args.multi_face,
            max_mb=args.max_mb,
            identity_threshold=args.identity_threshold,
            val=args.val,
            test=args.test,
            seed=args.seed,
        )
        report = import_images(args.src, args.out, options, workers=args.workers)
    for file, reason in report.skipped:
        print(f"skipped {file}: {reason}")
    print(f"{report.summary()}; records: {Path(args.out) / 'records.jsonl'}")
    return 0


def _add_import(sub) -> None:
    p = sub.add_parser("import", help="import face photos (detect, align, crop) or a caption/VQA dataset")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--src", help="folder of photos to detect, align and crop")
    what.add_argument("--records", help="caption/VQA dataset file (.json / .jsonl / .parquet, e.g. UniF2aceD-1M)")
    p.add_argument("--out", required=True, help="output folder (records.jsonl; images/ for --src)")
    p.add_argument("--layout", default="folder", choices=("folder", "ffhq", "celebahq"), help="--src layout")
    p.add_argument("--size", type=int, default=256, help="output side in pixels (default 256)")
    p.add_argument("--identity", choices=("file", "folder", "embedding", "celeba"), help="identity source")
    p.add_argument("--identity-threshold", type=float, help="descriptor distance for one person (default 0.5)")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=None, help="FFHQ landmark alignment")
    p.add_argument("--multi-face", default="skip", choices=("skip", "largest"), help="photos with several faces")
    p.add_argument("--max-mb", type=float, default=50.0, help="skip files larger than this (default 50)")
    p.add_argument("--workers", type=int, default=1, help="processes for --src (default 1)")
    p.add_argument(
        "--map", action="append", metavar="FIELD=PATH", help="column mapping, e.g. caption=conversations.1.value"
    )
    p.add_argument("--images-root", help="folder the --records image paths start from (default: its folder)")
    p.add_argument("--source", default="unif2aced", help="records' source name for --records (default unif2aced)")
    _add_split_args(p)
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.set_defaults(func=_import)


def _shards(args: argparse.Namespace) -> int:
    from unif2ace.data.records import read_records, write_shards

    records = read_records(args.records)
    if args.split:
        records = [r for r in records if r.split == args.split]
    paths = write_shards(records, Path(args.records).parent, args.out, shard_size=args.shard_size, prefix=args.prefix)
    print(f"{len(records)} records in {len(paths)} shard(s) under {args.out}")
    return 0


def _add_shards(sub) -> None:
    p = sub.add_parser("shards", help="pack records + images into WebDataset-style tar shards")
    p.add_argument("records", help="records file (.jsonl / .json / .parquet)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--split", choices=("train", "val", "test"), help="only this split")
    p.add_argument("--prefix", default="faces", help="shard name prefix (default faces)")
    p.set_defaults(func=_shards)


def _annotate(args: argparse.Namespace) -> int:
    from unif2ace.data.annotation import annotate_records, build_annotators

    annotators = build_annotators(args.backends.split(",") if args.backends else None)
    counts = annotate_records(args.records, annotators, redo=args.redo, progress=not args.quiet)
    print(f"{args.records}: {counts} with {', '.join(f'{a.name}@{a.version}' for a in annotators)}")
    return 0


def _add_annotate(sub) -> None:
    p = sub.add_parser(
        "annotate", help="fill attributes with local annotators (age/gender, expression, geometry, colour)"
    )
    p.add_argument("records", help="records file, rewritten atomically (resumable)")
    p.add_argument("--backends", help="comma-separated annotators in priority order (default: all available)")
    p.add_argument("--redo", action="store_true", help="annotate records that are already done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_annotate)


def _caption(args: argparse.Namespace) -> int:
    from unif2ace.data.captions import caption_records
    from unif2ace.data.refine import build_refiner

    refiner = build_refiner(args.refine)
    counts = caption_records(args.records, seed=args.seed, refiner=refiner, redo=args.redo, progress=not args.quiet)
    print(f"{args.records}: {counts}")
    return 0


def _add_caption(sub) -> None:
    p = sub.add_parser("caption", help="write captions + VQA from the attributes (run annotate first)")
    p.add_argument("records", help="records file, rewritten atomically (resumable)")
    p.add_argument("--refine", default="none", choices=("none", "openai", "smollm"), help="optional paraphraser")
    p.add_argument("--seed", type=int, default=0, help="phrasing seed (default 0)")
    p.add_argument("--redo", action="store_true", help="caption records that are already done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_caption)


def _gold(args: argparse.Namespace) -> int:
    from unif2ace.data.annotation.gold import markdown_table, write_report
    from unif2ace.data.records import read_records

    report = write_report(read_records(args.records), args.gold, args.out)
    print(markdown_table(report["attributes"]))
    print(f"unreliable (left out of captions and VQA): {', '.join(report['unreliable'])} -> {args.out}")
    return 0


def _add_gold(sub) -> None:
    p = sub.add_parser("gold", help="score the annotations against eye-labelled gold attributes (report.json)")
    p.add_argument("records", help="annotated records file")
    p.add_argument("--gold", default="data/gold/labels.jsonl", help="gold labels (default data/gold/labels.jsonl)")
    p.add_argument("--out", default="data/gold/report.json", help="report file (default data/gold/report.json)")
    p.set_defaults(func=_gold)


def _train_semantic(args: argparse.Namespace) -> int:
    from unif2ace.encoders.semantic import SemanticConfig
    from unif2ace.encoders.train_semantic import TrainOptions, train_semantic

    cfg = SemanticConfig(image_size=args.image_size)
    opts = TrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads)
    report = train_semantic(args.records, args.out, cfg, opts, progress=not args.quiet)
    print(
        f"held-out retrieval@1 among {report['candidates']}: {report['heldout_retrieval_at_1']:.3f} "
        f"({report['heldout_faces']} faces; train {report['train_retrieval_at_1']:.3f}) in {report['seconds']} s "
        f"-> {args.out}"
    )
    return 0


def _add_train_semantic(sub) -> None:
    p = sub.add_parser("train-semantic", help="train the semantic face-text encoder (LiT-style vs frozen MiniLM)")
    p.add_argument(
        "--records", required=True, action="append", help="captioned records (repeatable); train trains, val selects"
    )
    p.add_argument("--out", required=True, help="output folder (model.safetensors, config.json, report.json)")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (default 64)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--image-size", type=int, default=64, help="side the image tower sees (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_semantic)


def _features(args: argparse.Namespace) -> int:
    from unif2ace.encoders.features import build_feature_cache

    cache = build_feature_cache(
        args.records, args.kind, args.out, weights=args.weights, size=args.size, progress=not args.quiet
    )
    print(f"{len(cache)} {args.kind} feature rows of shape {cache.shape} -> {args.out}")
    return 0


def _add_features(sub) -> None:
    p = sub.add_parser("features", help="encoder features per record (clip / face) -> FeatureCache safetensors")
    p.add_argument("--kind", required=True, choices=("clip", "face"), help="encoder")
    p.add_argument("--records", required=True, help="records file")
    p.add_argument("--out", required=True, help="output .safetensors (training config: data.features.<kind>)")
    p.add_argument("--weights", help="clip: encoder folder (default: the shipped weights)")
    p.add_argument("--size", type=int, default=128, help="images are resized to this side first (default 128)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_features)


def _add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val", type=float, default=0.1, help="validation fraction of identities (default 0.1)")
    p.add_argument("--test", type=float, default=0.1, help="test fraction of identities (default 0.1)")


SUBCOMMANDS = (
    _add_synth,
    _add_import,
    _add_validate,
    _add_stats,
    _add_shards,
    _add_annotate,
    _add_caption,
    _add_gold,
    _add_train_semantic,
    _add_features,
)
"""One ``_add_<name>(sub)`` per ``unif2ace data`` subcommand, in help order."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``data`` and its subcommands."""
    data = sub.add_parser("data", help="build and check face corpora")
    inner = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for add in SUBCOMMANDS:
        add(inner)
