"""How many prompted binary attributes survive a tokenizer round trip, per tokenizer -> JSON.

The face-attribute annotators (``unif2ace.evaluation.generation.AttributeJudge``) read the tokenizer's
reconstructions of held-out faces and are checked against what each face's caption states. A generator that
writes through a tokenizer cannot be judged better than this ceiling, so it tells whether retraining the
transformer on a new tokenizer is worth it. Aggregation is that of ``benchmarks/prompt_following.py``.

Usage::

    python benchmarks/attribute_ceiling.py --data data/faces/records.jsonl --split val \
        --tokenizers src/unif2ace/weights/faces-tiny/vq runs/vq64_v2 --out benchmarks/results/attribute_ceiling.json
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch


def _prompt_following_module():
    spec = importlib.util.spec_from_file_location("prompt_following", Path(__file__).with_name("prompt_following.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    from unif2ace.data.dataset import load_records
    from unif2ace.evaluation.generation import AttributeJudge, prompt_attributes
    from unif2ace.tokenizer.vq.checkpoint import load_tokenizer
    from unif2ace.utils.images import from_tensor, load_image, to_tensor
    from unif2ace.utils.io import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="records JSONL with captions and images")
    p.add_argument("--split", default="val")
    p.add_argument("--num-faces", type=int, default=100)
    p.add_argument("--tokenizers", nargs="+", required=True, help="tokenizer folders or run folders")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)

    accuracy = _prompt_following_module()._accuracy
    data = Path(a.data)
    recs = load_records(data, a.split)[: a.num_faces]
    if not recs:
        raise SystemExit(f"{data}: no records in split {a.split!r}")
    prompts = [r["caption"] for r in recs]
    wanted = [prompt_attributes(t) for t in prompts]
    judge = AttributeJudge()
    real = [load_image(data.parent / r["image"]) for r in recs]
    result: dict = {"data": str(data), "split": a.split, "num_faces": len(recs)}
    result["real_faces"] = accuracy(judge.score(real, prompts)[0], wanted)
    result["tokenizers"] = {}
    for name in a.tokenizers:
        vq = load_tokenizer(name).eval()
        size = vq.config.resolution
        recon = []
        with torch.inference_mode():
            for i in range(0, len(real), 16):
                x = torch.stack([to_tensor(load_image(data.parent / r["image"], size)) for r in recs[i : i + 16]])
                recon += [from_tensor(t) for t in vq.decode(vq.encode(x)).clamp(-1, 1)]
        row = accuracy(judge.score(recon, prompts)[0], wanted)
        row["resolution"] = size
        result["tokenizers"][str(name)] = row
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
    atomic_write_json(a.out, result)
    return result


if __name__ == "__main__":
    main()
