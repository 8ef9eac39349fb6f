"""How often generated faces show the binary attributes their prompt asks for, per sampling setting.

For each CFG scale (and each MaskGIT step count / schedule / re-masking temperature given), the held-out captions
are generated (same seeds) and read by the face-attribute annotators
(``unif2ace.evaluation.generation.AttributeJudge``). Two ceilings are measured with the same judge: the real
faces the captions describe, and their tokenizer reconstructions (what the image tokens can carry at all).

Usage::

    python benchmarks/prompt_following.py --checkpoint src/unif2ace/weights/faces-tiny \
        --data data/faces/records.jsonl --guidance 1 2 3 5 --num-prompts 48 \
        --out benchmarks/results/prompt_following.json

``--rejudge EVAL_DIR ...`` instead reads the faces an ``unif2ace eval`` run saved (``EVAL_DIR/images/gen-<id>.png``;
prompts from its ``report.json``, or the ids in the file names) and scores them the same way, one row per folder,
without generating anything.

Rows are keyed by guidance scale (``"2.0"``); a setting that differs from the bundle's recipe is appended to the key
(``"2.0|steps=32|temperature=2.0"``) when ``--steps``, ``--schedule`` or ``--temperature`` list several values.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

# the binary attributes that the offline annotators can judge (hat / hair colour have none)
BINARY = ("gender", "smile", "eyeglasses", "beard")


def _accuracy(hits: list[dict[str, bool]], wanted: list[dict] | None = None) -> dict:
    """Rates per binary attribute, their mean, pooled over checks, and over every judged attribute.

    With ``wanted`` (the value each prompt asks for, aligned with ``hits``), ``<attribute>_by_value`` splits each
    binary rate by the requested value (e.g. smiling asked vs. not smiling asked).
    """
    out: dict = {}
    pooled: list[bool] = []
    for name in BINARY:
        vals = [h[name] for h in hits if name in h]
        if vals:
            out[name] = float(np.mean(vals))
            out[f"{name}_n"] = len(vals)
            pooled += vals
            if wanted is not None:
                split: dict[str, list[bool]] = {}
                for h, w in zip(hits, wanted, strict=True):
                    if name in h:
                        split.setdefault(str(w[name]), []).append(h[name])
                out[f"{name}_by_value"] = {v: [float(np.mean(x)), len(x)] for v, x in sorted(split.items())}
    out["binary_mean"] = float(np.mean([out[n] for n in BINARY if n in out])) if pooled else float("nan")
    out["binary_pooled"] = float(np.mean(pooled)) if pooled else float("nan")
    every = [v for h in hits for v in h.values()]
    out["all_attributes"] = float(np.mean(every)) if every else float("nan")
    return out


def _row_key(guidance: float, swept: dict[str, tuple]) -> str:
    """``"2.0"``, plus ``|name=value`` for each setting given with more than one value on the command line."""
    parts = [str(guidance)] + [f"{k}={v}" for k, (v, given) in swept.items() if len(given) > 1]
    return "|".join(parts)


def _rejudge(folders: list[str], captions: dict[str, str], judge) -> dict:
    """Rows of :func:`_accuracy` for the generated faces saved by earlier ``unif2ace eval`` runs, keyed by folder."""
    from unif2ace.evaluation.generation import prompt_attributes
    from unif2ace.utils.images import load_image

    rows = {}
    for folder in map(Path, folders):
        report_file = folder / "report.json"  # absent when the eval was stopped after generating
        report = json.loads(report_file.read_text()) if report_file.exists() else None
        ids = report["recipe"]["prompt_ids"] if report else sorted(p.stem[4:] for p in folder.glob("images/gen-*.png"))
        prompts = [captions[i] for i in ids]
        images = [load_image(folder / "images" / f"gen-{i}.png") for i in ids]
        row = _accuracy(judge.score(images, prompts)[0], [prompt_attributes(t) for t in prompts])
        if report:
            row["model_hash"] = report["model"]["hash"]
            row["recipe"] = {k: report["recipe"][k] for k in ("seed", "steps", "guidance_scale")}
        rows[str(folder)] = row
        print(f"{folder}: binary_pooled {row['binary_pooled']:.4f}, all_attributes {row['all_attributes']:.4f}")
    return rows


def main(argv: list[str] | None = None) -> dict:
    from unif2ace.data.dataset import load_records
    from unif2ace.evaluation.generation import AttributeJudge, prompt_attributes
    from unif2ace.pipeline import Unif2acePipeline
    from unif2ace.utils.images import load_image
    from unif2ace.utils.io import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="bundle folder (default: the shipped faces-tiny)")
    p.add_argument("--data", required=True, help="records JSONL with captions and images")
    p.add_argument("--split", default="test")
    p.add_argument("--num-prompts", type=int, default=48)
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    p.add_argument("--steps", type=int, nargs="+", default=[None], help="MaskGIT steps (default: the bundle's recipe)")
    p.add_argument("--schedule", nargs="+", default=[None], help="mask schedule(s) (default: the bundle's recipe)")
    p.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=[None],
        help="re-masking temperature(s) (default: the bundle's recipe)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--rejudge", nargs="+", metavar="EVAL_DIR", help="score the faces saved by `unif2ace eval` runs")
    a = p.parse_args(argv)
    if a.rejudge:
        captions = {r["id"]: r["caption"] for r in load_records(a.data)}
        result = {"rejudged": _rejudge(a.rejudge, captions, AttributeJudge())}
        atomic_write_json(a.out, result)
        return result

    data = Path(a.data)
    recs = load_records(data, a.split)[: a.num_prompts]
    if not recs:
        raise SystemExit(f"{data}: no records in split {a.split!r}")
    prompts = [r["caption"] for r in recs]
    pipe = Unif2acePipeline.from_pretrained(a.checkpoint)
    judge = AttributeJudge()
    real = [load_image(data.parent / r["image"]) for r in recs]
    wanted = [prompt_attributes(t) for t in prompts]
    result: dict = {
        "checkpoint": str(a.checkpoint or "faces-tiny (packaged)"),
        "model_hash": pipe.model_hash,
        "num_prompts": len(prompts),
        "recipe": {k: getattr(pipe.info.recipe, k) for k in ("steps", "guidance_scale", "schedule", "temperature")},
        "seed": a.seed,
        "host": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "real_faces": _accuracy(judge.score(real, prompts)[0], wanted),
        "reconstructions": _accuracy(judge.score([pipe.reconstruct(im) for im in real], prompts)[0], wanted),
        "guidance": {},
    }
    grid = [(w, st, sc, t) for w in a.guidance for st in a.steps for sc in a.schedule for t in a.temperature]
    for w, st, sc, t in grid:
        start = time.perf_counter()
        images = []
        for i in range(0, len(prompts), 8):
            res = pipe.generate(prompts[i : i + 8], steps=st, guidance_scale=w, schedule=sc, temperature=t,
                                seed=a.seed + i // 8)  # fmt: skip
            images += res.images
        gen_s = time.perf_counter() - start
        row = _accuracy(judge.score(images, prompts)[0], wanted)
        row["generate_s_per_image"] = gen_s / len(images)
        row["settings"] = {k: res.metadata[k] for k in ("steps", "guidance_scale", "schedule", "temperature")}
        key = _row_key(w, {"steps": (st, a.steps), "schedule": (sc, a.schedule), "temperature": (t, a.temperature)})
        result["guidance"][key] = row
        print(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
    atomic_write_json(a.out, result)
    print(json.dumps({k: result[k] for k in ("real_faces", "reconstructions")}, indent=1))
    return result


if __name__ == "__main__":
    main()
