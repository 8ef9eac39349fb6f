"""Import real face photos (FFHQ, CelebA-HQ, any folder) into an aligned, identity-split FaceRecord corpus.

Spec §7.1: UniF²aceD-1M draws on FFHQ, CelebA-HQ and CelebV-HQ frames, all faces aligned FFHQ-style. Every
source file is loaded robustly, checked for exactly one face (dlib, :mod:`unif2ace.data.faces`), aligned by
its eye and mouth landmarks (or centre-cropped for already-aligned layouts), resized and written as
``out/images/<id>.png``. Files that are corrupt, too large, hold no face or several faces are reported and
skipped; the run always finishes. Work is logged per file in ``out/import_log.jsonl``, so an interrupted
import resumes where it stopped. Identities (for identity-disjoint splits) come from folder names, CelebA
identity labels, or greedy clustering of dlib's 128-d face descriptors.

Caption / VQA datasets on local disk (UniF²aceD-1M, LLaVA-style JSON) are imported by
:mod:`unif2ace.data.import_records`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unif2ace.data.records import FaceRecord, write_records
from unif2ace.data.splits import assign_splits
from unif2ace.utils.images import list_images, load_image, resize_center_crop
from unif2ace.utils.io import atomic_path, atomic_write_json

LAYOUTS = ("folder", "ffhq", "celebahq")
IDENTITY_MODES = ("file", "folder", "embedding", "celeba")
_DEFAULT_IDENTITY = {"folder": "embedding", "ffhq": "file", "celebahq": "celeba"}


@dataclass
class ImportOptions:
    """Settings of an image import (fixed for an output folder; a resumed run must use the same ones).

    Attributes:
        layout: ``folder`` (any tree of photos), ``ffhq`` (aligned FFHQ PNGs) or ``celebahq`` (``CelebA-HQ-img``).
        size: output side in pixels.
        align: FFHQ-style landmark alignment; None = on for ``folder``, off (centre crop) for the pre-aligned layouts.
        identity: ``file`` | ``folder`` | ``embedding`` | ``celeba``; None = the layout's default.
        multi_face: ``skip`` photos with several faces, or keep the ``largest``.
        max_mb: larger files are skipped before decoding.
        upsample: dlib detector upsampling (1 finds faces down to ~40 px).
        identity_threshold: descriptor distance for one person with ``identity="embedding"`` (None = default).
        val: fraction of identities for validation.
        test: fraction of identities for test.
        seed: split seed.
    """

    layout: str = "folder"
    size: int = 256
    align: bool | None = None
    identity: str | None = None
    multi_face: str = "skip"
    max_mb: float = 50.0
    upsample: int = 1
    identity_threshold: float | None = None
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.identity is not None and self.identity not in IDENTITY_MODES:
            raise ValueError(f"--identity must be one of {', '.join(IDENTITY_MODES)}, got {self.identity!r}")
        if self.multi_face not in ("skip", "largest"):
            raise ValueError(f"--multi-face must be 'skip' or 'largest', got {self.multi_face!r}")
        if not 16 <= self.size <= 4096:
            raise ValueError(f"--size must be in [16, 4096], got {self.size}")
        if self.max_mb <= 0:
            raise ValueError(f"--max-mb must be positive, got {self.max_mb}")
        self.align = self.layout == "folder" if self.align is None else self.align
        self.identity = self.identity or _DEFAULT_IDENTITY[self.layout]


@dataclass
class ImportReport:
    """What an import produced.

    Attributes:
        records: the imported records (also written to ``out/records.jsonl``).
        skipped: ``(source file, one-line reason)`` for every file or row that was left out.
    """

    records: list[FaceRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts of imported and skipped items."""
        return f"{len(self.records)} imported, {len(self.skipped)} skipped"


def import_images(src: str | Path, out: str | Path, options: ImportOptions, workers: int = 1) -> ImportReport:
    """Detect, align, crop and resize every face photo under ``src`` into ``out`` (resumable).

    Args:
        src: source folder.
        out: output folder (``images/``, ``records.jsonl``, ``import_report.json``, ``import_log.jsonl``).
        options: import settings.
        workers: processes (each loads its own dlib models).

    Returns:
        The report (records and skipped files with reasons).

    Raises:
        FileNotFoundError: ``src`` is missing, or dlib is not installed.
        ValueError: ``out`` holds an import with other settings.
    """
    src, out = Path(src), Path(out)
    files = [f for f in _source_files(src, options.layout) if out.resolve() not in f.resolve().parents]
    if options.identity == "celeba":
        celeba_identities(src)  # fail now, not after hours of work, if the label files are missing
    settings = {"src": str(src.resolve()), **asdict(options)}
    settings_file = out / "import.json"
    if settings_file.is_file() and json.loads(settings_file.read_text()) != settings:
        raise ValueError(f"{out} holds an import with other settings ({settings_file}); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(settings_file, settings)
    ids = _unique_ids(files, src, options.layout)
    done = _read_log(out / "import_log.jsonl")
    jobs = [(str(f), rid, str(out), options) for f, rid in zip(files, ids, strict=True)]
    todo = [j for j in jobs if not _reusable(done.get(j[1]), Path(j[0]), out, options)]
    _run_jobs(todo, out / "import_log.jsonl", done, workers)
    results = [done[rid] for rid in ids]
    report = ImportReport(skipped=[(r["src"], r["reason"]) for r in results if r["status"] != "ok"])
    ok = [r for r in results if r["status"] == "ok"]
    identities = _identities(ok, src, options)
    report.records = [_record(r, identities[r["id"]], options) for r in ok]
    assign_splits(report.records, options.val, options.test, seed=options.seed)
    keep_annotations(out / "records.jsonl", report.records)
    write_records(out / "records.jsonl", report.records)
    sizes = Counter(r.identity for r in report.records)
    atomic_write_json(
        out / "import_report.json",
        {
            "imported": len(report.records),
            "identities": len(sizes),
            "largest_identity": max(sizes.values(), default=0),
            "skipped": [{"file": f, "reason": why} for f, why in report.skipped],
        },
    )
    return report


def _source_files(src: Path, layout: str) -> list[Path]:
    if layout == "celebahq" and (src / "CelebA-HQ-img").is_dir():
        src = src / "CelebA-HQ-img"
    files = list_images(src)
    if not files:
        raise FileNotFoundError(f"no image files under {src}")
    return files


def _unique_ids(files: list[Path], src: Path, layout: str) -> list[str]:
    """``<layout>-<relative path without suffix>`` made filename-safe; clashes get a path-hash suffix."""
    rels = [f.relative_to(src).with_suffix("").as_posix() for f in files]
    ids = [f"{layout}-{re.sub(r'[^A-Za-z0-9_-]+', '_', rel)}" for rel in rels]
    counts: dict[str, int] = {}
    for rid in ids:
        counts[rid] = counts.get(rid, 0) + 1
    return [
        rid if counts[rid] == 1 else f"{rid}-{hashlib.sha1(f.as_posix().encode()).hexdigest()[:8]}"
        for rid, f in zip(ids, files, strict=True)
    ]


def _read_log(path: Path) -> dict[str, dict[str, Any]]:
    """Per-id results of earlier runs (a torn last line from a crash is ignored)."""
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[entry["id"]] = entry
    return done


def _reusable(entry: dict[str, Any] | None, file: Path, out: Path, options: ImportOptions) -> bool:
    if entry is None or entry["stat"] != _stat(file):
        return False
    if entry["status"] != "ok":
        return True
    return (out / entry["file"]).is_file() and (options.identity != "embedding" or entry.get("embedding") is not None)


def _stat(file: Path) -> list[int]:
    st = file.stat()
    return [st.st_size, st.st_mtime_ns]


def _run_jobs(jobs: list[tuple], log: Path, done: dict[str, dict[str, Any]], workers: int) -> None:
    if not jobs:
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="import faces", unit="file", disable=len(jobs) < 20)
    with open(log, "a") as fh, ProcessPoolExecutor(workers) if workers > 1 else _InProcess() as pool:
        for result in pool.map(_process, jobs, chunksize=4):
            fh.write(json.dumps(result) + "\n")
            fh.flush()
            done[result["id"]] = result
            bar.update(1)
    bar.close()


class _InProcess:
    """``ProcessPoolExecutor`` stand-in that runs jobs in this process (one worker: no pickling, easy debugging)."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items, chunksize: int = 1):
        """Lazy ``map(fn, items)``."""
        return map(fn, items)


_ANALYZERS: dict[int, Any] = {}


def _analyzer(upsample: int):
    if upsample not in _ANALYZERS:
        from unif2ace.data.faces import FaceAnalyzer

        _ANALYZERS[upsample] = FaceAnalyzer(upsample=upsample)
    return _ANALYZERS[upsample]


def _process(job: tuple[str, str, str, ImportOptions]) -> dict[str, Any]:
    """Load, check, align and save one file; never raises for a bad file (returns status ``skipped``)."""
    file, rid, out, opts = Path(job[0]), job[1], Path(job[2]), job[3]
    result: dict[str, Any] = {"id": rid, "src": str(file), "stat": _stat(file), "status": "skipped"}
    megabytes = result["stat"][0] / 1e6
    if megabytes > opts.max_mb:
        return {**result, "reason": f"huge file ({megabytes:.1f} MB > --max-mb {opts.max_mb:g})"}
    try:
        img = load_image(file)
    except ValueError as err:
        return {**result, "reason": str(err).removeprefix(f"{file}: ")}
    analyzer = _analyzer(opts.upsample)
    faces = analyzer.detect(img)
    if not faces:
        return {**result, "reason": "no face found"}
    if len(faces) > 1 and opts.multi_face == "skip":
        return {**result, "reason": f"{len(faces)} faces found (--multi-face largest keeps the largest)"}
    face = faces[0]
    if opts.align:
        from unif2ace.data.faces import align_face

        aligned = align_face(img, face.landmarks, opts.size)
    else:
        aligned = resize_center_crop(img, opts.size)
    embedding = analyzer.embed(img, face).tolist() if opts.identity == "embedding" else None
    rel = f"images/{rid}.png"
    with atomic_path(out / rel) as tmp:
        aligned.save(tmp, format="PNG", optimize=True)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    return {
        **result,
        **{"status": "ok", "file": rel, "sha256": sha, "box": list(face.box), "score": round(face.score, 4)},
        **{"faces": len(faces), "source_size": list(img.size), "embedding": embedding},
    }


def _identities(ok: list[dict[str, Any]], src: Path, options: ImportOptions) -> dict[str, str]:
    if options.identity == "file":
        return {r["id"]: r["id"] for r in ok}
    if options.identity == "folder":  # photos directly in src are their own identity
        parents = {r["id"]: Path(r["src"]).parent.relative_to(src).as_posix() for r in ok}
        return {rid: f"folder-{parent}" if parent != "." else rid for rid, parent in parents.items()}
    if options.identity == "celeba":
        labels = celeba_identities(src)
        return {
            r["id"]: f"celeba-{labels[Path(r['src']).stem]}" if Path(r["src"]).stem in labels else r["id"] for r in ok
        }
    ordered = sorted(ok, key=lambda r: r["id"])
    if not ordered:
        return {}
    clusters = cluster_embeddings(
        np.array([r["embedding"] for r in ordered], dtype=np.float32), threshold=options.identity_threshold
    )
    first = {}
    for r, c in zip(ordered, clusters, strict=True):
        first.setdefault(c, r["id"])
    return {r["id"]: f"face-{first[c]}" for r, c in zip(ordered, clusters, strict=True)}


def cluster_embeddings(embeddings: np.ndarray, threshold: float | None = None) -> list[int]:
    """Leader clustering: each face joins the cluster whose *first* face is nearest and closer than ``threshold``.

    Comparing with a fixed exemplar (not a running mean, not any member) avoids centroid drift and chaining,
    which otherwise merge ever more distinct people as the corpus grows. A threshold rule on face descriptors
    is still approximate: use folder or dataset identity labels for large corpora where they exist.

    Args:
        embeddings: ``(N, 128)`` dlib descriptors, in a fixed order (the result depends on it).
        threshold: distance for "same person" (default :data:`unif2ace.data.faces.SAME_IDENTITY_DISTANCE`).

    Returns:
        Cluster index per face (``0..C-1``, in order of first appearance).
    """
    from unif2ace.data.faces import SAME_IDENTITY_DISTANCE

    threshold = SAME_IDENTITY_DISTANCE if threshold is None else threshold
    leaders = np.zeros((0, embeddings.shape[1]), dtype=np.float64)  # (C, 128) first face of each cluster
    labels = []
    for emb in embeddings:
        if len(leaders):
            dist = np.linalg.norm(leaders - emb, axis=1)  # (C,)
            best = int(np.argmin(dist))
            if dist[best] < threshold:
                labels.append(best)
                continue
        leaders = np.vstack([leaders, emb[None]])
        labels.append(len(leaders) - 1)
    return labels


def celeba_identities(src: Path) -> dict[str, str]:
    """CelebA-HQ image stem (``"0"`` .. ``"29999"``) -> CelebA identity label, from the official text files.

    Reads ``CelebA-HQ-to-CelebA-mapping.txt`` (``idx orig_idx orig_file``) and ``identity_CelebA.txt``
    (``orig_file label``) found in ``src`` or its parent.

    Raises:
        FileNotFoundError: a file is missing (says where it was looked for and the alternative).
    """
    found = {}
    for name in ("CelebA-HQ-to-CelebA-mapping.txt", "identity_CelebA.txt"):
        for folder in (src, src.parent):
            if (folder / name).is_file():
                found[name] = folder / name
                break
        else:
            raise FileNotFoundError(
                f"--identity celeba needs {name} in {src} or its parent (or use --identity embedding)"
            )
    labels = dict(line.split()[:2] for line in found["identity_CelebA.txt"].read_text().splitlines() if line.strip())
    mapping = {}
    for line in found["CelebA-HQ-to-CelebA-mapping.txt"].read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2] in labels:
            mapping[parts[0]] = labels[parts[2]]
    return mapping


def _record(result: dict[str, Any], identity: str, options: ImportOptions) -> FaceRecord:
    provenance = {
        "original": result["src"],
        "sha256": result["sha256"],
        "detector": "dlib-hog",
        "box": result["box"],
        "score": result["score"],
        "faces": result["faces"],
        "source_size": result["source_size"],
        "crop": "ffhq-align" if options.align else "center-crop",
    }
    return FaceRecord(
        id=result["id"], image=result["file"], source=options.layout, identity=identity, provenance=provenance
    )


def keep_annotations(path: Path, records: list[FaceRecord]) -> None:
    """Carry caption, attributes and VQA of same-id records in an existing ``path`` over to ``records``.

    Re-running an import (or a synthesis) must never drop annotations added to its records file since.
    """
    if not path.is_file():
        return
    from unif2ace.data.records import read_records

    old = {r.id: r for r in read_records(path)}
    for rec in records:
        if rec.id in old:
            rec.caption, rec.attributes, rec.vqa = old[rec.id].caption, old[rec.id].attributes, old[rec.id].vqa
