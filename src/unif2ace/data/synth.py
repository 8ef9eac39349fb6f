"""Photoreal synthetic faces, offline: MobileStyleGAN (a distillation of StyleGAN2-FFHQ) run with OpenVINO.

The PyPI package ``random-face`` ships the two networks as OpenVINO IR files (``random_face/data/
{Mapping,Synthesis}Network.{xml,bin}``): ``z (1, 512) -> w (1, 512) -> image (1, 3, 1024, 1024)`` in about
[-1, 1]. Its Python API is not used (it is broken); we locate the files with ``importlib.util.find_spec``.
Install: ``pip install --no-deps random-face && pip install openvino`` (see ``requirements/data-nodeps.txt``).

Determinism: image ``i`` of a run with seed ``K`` uses ``z ~ N(0, I)`` from ``numpy.random.SeedSequence([K, i])``
and truncation ``w = w_avg + psi (w - w_avg)`` with ``w_avg`` the mean of 4096 mapped ``z`` from a fixed seed. The
same ``(K, i, psi, size)`` gives the same PNG bytes on the same software stack; files are written atomically and
a re-run skips complete images, so an interrupted run resumes.

Licence: the weights descend from NVIDIA's StyleGAN2 (non-commercial): the corpus is for research only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unif2ace.data.records import FaceRecord, read_records, write_records
from unif2ace.data.splits import assign_splits
from unif2ace.utils.io import atomic_path, atomic_write_text

GENERATOR_NAME = "MobileStyleGAN (random-face 2021.7.21.1, OpenVINO IR)"
W_AVG_SEED, W_AVG_SAMPLES = 20240607, 4096


@dataclass
class SynthEntry:
    """One manifest line."""

    id: str
    file: str
    index: int
    seed: int
    psi: float
    size: int
    generator: str
    weights_sha256: str


def model_dir() -> Path:
    """Folder of the MobileStyleGAN IR files inside the installed ``random-face`` package.

    Raises:
        FileNotFoundError: the package is not installed (says how to install it).
    """
    spec = importlib.util.find_spec("random_face")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "face synthesis needs the 'random-face' package's model files: pip install --no-deps random-face openvino"
        )
    folder = Path(spec.origin).parent / "data"
    for name in ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"missing MobileStyleGAN file {folder / name}; reinstall random-face")
    return folder


def weights_hash(folder: Path) -> str:
    """sha256 over the two ``.bin`` weight files (recorded in the manifest)."""
    h = hashlib.sha256()
    for name in ("MappingNetwork.bin", "SynthesisNetwork.bin"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


class FaceGenerator:
    """The two compiled networks.

    Args:
        threads: OpenVINO inference threads.
    """

    def __init__(self, threads: int = 1) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise FileNotFoundError("face synthesis needs OpenVINO: pip install openvino") from None
        folder = model_dir()
        core = ov.Core()
        # No CPU pinning: OpenVINO would pin every single-thread worker process to core 0, so N workers shared
        # one core (seen with openvino 2026.4: 2 workers at 50 % each on a 2-core machine).
        cfg = {"INFERENCE_NUM_THREADS": max(1, threads), "ENABLE_CPU_PINNING": False}
        self.mapping = core.compile_model(str(folder / "MappingNetwork.xml"), "CPU", cfg)
        self.synthesis = core.compile_model(str(folder / "SynthesisNetwork.xml"), "CPU", cfg)

    def map(self, z: np.ndarray) -> np.ndarray:
        """``z`` ``(512,)`` -> style ``w`` ``(512,)``."""
        return np.asarray(self.mapping([z[None].astype(np.float32)])[0])[0]

    def synthesize(self, w: np.ndarray) -> np.ndarray:
        """Style ``w`` ``(512,)`` -> ``(1024, 1024, 3)`` uint8 image."""
        img = np.asarray(self.synthesis([w[None].astype(np.float32)])[0])[0]  # (3, 1024, 1024) in ~[-1, 1]
        return np.clip((img.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)

    def w_avg(self) -> np.ndarray:
        """Mean style of ``W_AVG_SAMPLES`` latents from a fixed seed (the truncation centre)."""
        rng = np.random.RandomState(W_AVG_SEED)
        return np.mean([self.map(rng.randn(512)) for _ in range(W_AVG_SAMPLES)], axis=0).astype(np.float32)


def image_seed(seed: int, index: int) -> int:
    """Per-image seed derived from the run seed and the image index (recorded in the manifest)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


_WORKER: dict = {}


def _init_worker(threads: int, w_avg: np.ndarray) -> None:
    _WORKER["gen"] = FaceGenerator(threads)
    _WORKER["w_avg"] = w_avg


def _render(job: tuple[int, int, float, int, str]) -> int:
    index, seed_i, psi, size, path = job
    gen, w_avg = _WORKER["gen"], _WORKER["w_avg"]
    z = np.random.RandomState(seed_i).randn(512)
    w = w_avg + psi * (gen.map(z) - w_avg)
    img = Image.fromarray(gen.synthesize(w))
    if size != img.width:
        img = img.resize((size, size), Image.LANCZOS)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return index


def load_w_avg(out: Path) -> np.ndarray:
    """``w_avg`` cached as ``out/w_avg.npy``.

    Computed once (a few seconds) with one thread, so that it does not depend on the machine's core count.
    """
    cache = out / "w_avg.npy"
    if cache.is_file():
        return np.load(cache)
    w_avg = FaceGenerator(1).w_avg()
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, w_avg)
    return w_avg


def synthesize_faces(
    n: int,
    out: str | Path,
    size: int = 256,
    psi: float = 0.8,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> list[SynthEntry]:
    """Generate ``n`` faces into ``out/images/`` with ``out/manifest.jsonl``; resumes an interrupted run.

    Args:
        n: number of faces.
        out: output folder.
        size: square output size in pixels (16..1024).
        psi: truncation (>= 0.8 keeps identities diverse; 1 = none).
        seed: run seed.
        workers: processes (default: CPU count); each uses ``cpu_count // workers`` threads.
        progress: show a progress bar.

    Returns:
        The manifest entries, in index order.

    Raises:
        ValueError: bad arguments, or ``out`` holds a run with other settings.
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if not 16 <= size <= 1024:
        raise ValueError(f"--size must be in [16, 1024], got {size}")
    if not 0.0 < psi <= 1.0:
        raise ValueError(f"--psi must be in (0, 1], got {psi}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    settings = {"seed": seed, "psi": psi, "size": size, "generator": GENERATOR_NAME}
    settings_file = out / "synth.json"
    if settings_file.is_file() and json.loads(settings_file.read_text()) != settings:
        raise ValueError(f"{out} holds a synthesis run with other settings ({settings_file}); choose another --out")
    atomic_write_text(settings_file, json.dumps(settings, indent=2))
    cpus = os.cpu_count() or 1
    workers = max(1, min(workers or cpus, n))
    folder = model_dir()
    w_hash = weights_hash(folder)
    entries = [
        SynthEntry(
            f"synth-{seed}-{i:06d}",
            f"images/{seed}-{i:06d}.png",
            i,
            image_seed(seed, i),
            psi,
            size,
            GENERATOR_NAME,
            w_hash,
        )
        for i in range(n)
    ]
    todo = [(e.index, e.seed, psi, size, str(out / e.file)) for e in entries if not (out / e.file).is_file()]
    if todo:
        w_avg = load_w_avg(out)
        threads = max(1, cpus // workers)
        from tqdm.auto import tqdm

        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(threads, w_avg)) as pool:
            bar = tqdm(total=len(todo), desc="synth faces", unit="face", disable=not progress)
            for _ in pool.map(_render, todo, chunksize=1):
                bar.update(1)
            bar.close()
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(asdict(e)) + "\n" for e in entries))
    return entries


def update_synth_records(
    out: str | Path, entries: list[SynthEntry], val: float = 0.1, test: float = 0.1, seed: int = 0
) -> Path:
    """Write ``out/records.jsonl`` for synthesised faces, keeping every record already there.

    Existing records (with their splits and any captions / attributes / VQA added since) are kept as they are;
    faces new to the file get a record each (``source`` ``synth``, every face its own identity) and seeded,
    identity-disjoint splits among themselves.

    Args:
        out: the synthesis folder.
        entries: manifest entries (see :func:`synthesize_faces`).
        val: validation fraction of new identities.
        test: test fraction of new identities.
        seed: split seed.

    Returns:
        The records file.
    """
    path = Path(out) / "records.jsonl"
    old = read_records(path) if path.is_file() else []
    known = {r.id for r in old}
    new = [
        FaceRecord(
            id=e.id,
            image=e.file,
            source="synth",
            identity=e.id,
            provenance={"seed": e.seed, "psi": e.psi, "generator": e.generator, "weights_sha256": e.weights_sha256},
        )
        for e in entries
        if e.id not in known
    ]
    if new or not path.is_file():
        write_records(path, old + assign_splits(new, val, test, seed=seed))
    return path
