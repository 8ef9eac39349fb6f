"""Does a model read an attribute's words when it predicts the image tokens that show it? (seconds, no sampling)

For held-out faces whose caption states an attribute in one of the corpus's phrasings (e.g. "is not smiling, with
closed lips"), the caption is rewritten to state the opposite value ("is smiling, with parted lips", and the closing
mood sentence that restates the expression, "quiet concentration" -> "a relaxed, friendly mood"). With every image
token masked (the first MaskGIT step) and the bundle's own codes of the real face as targets, the script averages

* ``flip``: ``log p(true codes | caption) - log p(true codes | flipped caption)`` at the attribute's positions
  (the ``--top`` positions whose codes carry most information about the attribute on the training faces,
  :func:`unif2ace.data.dataset.attribute_position_weights`) and at the rest;
* ``vs_empty``: the same against the empty (CFG) prompt.

A model that draws what the words say has ``flip`` clearly above 0 at the attribute's positions and about 0 elsewhere;
``flip`` ~ 0 there means it ignores those words, whatever its pooled attribute rates (prompted rates need
``benchmarks/prompt_following.py``, minutes of sampling; this takes seconds).

Usage::

    python benchmarks/attribute_text_use.py --checkpoint runs/faces-tiny-8kx2 src/unif2ace/weights/faces-tiny \
        --data data/faces/records.jsonl --out benchmarks/results/attribute_text_use.json
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

# (attribute, value the caption states, key rules, extra rules) in the phrasings of unif2ace.data.captions: a caption
# qualifies when one key rule matches; every key and extra rule is then applied
Rule = tuple[str, str]
# the captions state the expression twice: the smile sentence and a closing mood sentence; a flip changes both
MOOD_NEUTRAL = r"a steady, unhurried manner|quiet concentration|a composed, attentive moment"
MOOD_HAPPY = r"that the moment is a pleasant one|a relaxed, friendly mood|an easy-going, approachable manner"
FLIPS: list[tuple[str, object, list[Rule], list[Rule]]] = [
    (
        "smile",
        False,
        [(r"is not smiling, with closed lips", "is smiling, with parted lips")],
        [(r"calm and neutral", "happy"), (MOOD_NEUTRAL, "a relaxed, friendly mood")],
    ),
    (
        "smile",
        True,
        [
            (
                r"(is smiling|smiles warmly), with (parted lips|the mouth slightly open)",
                "is not smiling, with closed lips",
            ),
        ],
        [(r"\bhappy\b", "calm and neutral"), (MOOD_HAPPY, "a steady, unhurried manner")],
    ),
    (
        "eyeglasses",
        False,
        [
            (r"wears no glasses", "wears glasses"),
            (r"There are no glasses on (his|her) face", r"There are glasses on \1 face"),
        ],
        [],
    ),
    (
        "eyeglasses",
        True,
        [
            (r"wears (a pair of )?glasses, with no sunglasses", "wears no glasses"),
            (r"is wearing (a pair of )?glasses", "is wearing no glasses"),
        ],
        [],
    ),
]


def flip_caption(caption: str, keys: list[Rule], extras: list[Rule]) -> str | None:
    """The caption with the rules applied, or None when no key rule (the attribute's own phrase) matches."""
    if not any(re.search(pattern, caption) for pattern, _ in keys):
        return None
    for pattern, repl in [*keys, *extras]:
        caption = re.sub(pattern, repl, caption)
    return caption


@torch.no_grad()
def token_logprobs(pipe, captions: list[str], codes: torch.Tensor, chunk: int = 16, seed: int = 0) -> torch.Tensor:
    """``(B, N)`` log p of ``codes`` at every image position with all image tokens masked, given each caption.

    The sequence MoE's noise expert draws from a generator seeded per chunk, so that calls on the same faces with
    other captions see the same noise (as a CFG pair does) and differ only by the text.
    """
    prompter, m = pipe.layouts.prompter, pipe.layouts.max_text_len
    out = []
    for i in range(0, len(captions), chunk):
        texts, x0 = captions[i : i + chunk], codes[i : i + chunk].to(pipe.device)
        prefix = prompter.t2i_gen(texts).input_ids[:, : m + 1].to(pipe.device)
        gen = torch.Generator(device=pipe.device).manual_seed(seed + i)
        logits_for = pipe.engine._image_branch(prefix, x0.shape[1], pipe._zero_features(len(texts)), gen)
        masked = torch.full_like(x0, pipe.vocab.codebook_size)
        out.append(logits_for(masked).log_softmax(-1).gather(-1, x0[..., None]).squeeze(-1).cpu())
    return torch.cat(out)


def measure(pipe, train_recs: list[dict], train_codes, test_recs: list[dict], test_codes, top: int) -> dict:
    """``flip`` / ``vs_empty`` rows per (attribute, stated value); see the module docstring."""
    from unif2ace.data.dataset import attribute_position_weights

    rows: dict = {}
    for name in sorted({f[0] for f in FLIPS}):
        weights = attribute_position_weights(train_recs, train_codes, [name], 1.0)
        carrier = weights.topk(top).indices
        rest = torch.ones_like(weights, dtype=torch.bool)
        rest[carrier] = False
        for attr, value, keys, extras in FLIPS:
            if attr != name:
                continue
            picked = [
                (i, flipped)
                for i, r in enumerate(test_recs)
                if (r.get("attributes") or {}).get(attr, {}).get("value") == value
                and (flipped := flip_caption(r["caption"], keys, extras)) is not None
            ]
            if not picked:
                continue
            idx = [i for i, _ in picked]
            caps = [test_recs[i]["caption"] for i in idx]
            codes = test_codes[idx]
            lp = token_logprobs(pipe, caps, codes)
            flip = lp - token_logprobs(pipe, [f for _, f in picked], codes)
            empty = lp - token_logprobs(pipe, [""] * len(idx), codes)
            rows[f"{attr}={value}"] = {
                "faces": len(idx),
                "positions": sorted(carrier.tolist()),
                "flip_at_attribute": round(float(flip[:, carrier].mean()), 4),
                "flip_elsewhere": round(float(flip[:, rest].mean()), 4),
                "vs_empty_at_attribute": round(float(empty[:, carrier].mean()), 4),
                "vs_empty_elsewhere": round(float(empty[:, rest].mean()), 4),
            }
    return rows


def _encode(pipe, data: Path, recs: list[dict]) -> torch.Tensor:
    """``(R, N)`` codes of the records' images under the bundle's own tokenizer."""
    from unif2ace.utils.images import load_image

    batches = [recs[i : i + 64] for i in range(0, len(recs), 64)]
    return torch.cat(
        [pipe.encode([load_image(data.parent / r["image"], pipe.image_size) for r in b]).cpu() for b in batches]
    )


def main(argv: list[str] | None = None) -> dict:
    from unif2ace.data.dataset import load_records
    from unif2ace.pipeline import Unif2acePipeline
    from unif2ace.utils.io import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", nargs="+", default=[None], help="bundle folder(s) (default: the shipped faces-tiny)")
    p.add_argument("--data", required=True, help="records JSONL with captions, attributes and images")
    p.add_argument("--split", default="test")
    p.add_argument("--num-faces", type=int, default=100, help="held-out faces per run")
    p.add_argument("--num-map", type=int, default=1000, help="training faces that locate each attribute's tokens")
    p.add_argument("--top", type=int, default=6, help="positions counted as the attribute's")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    if a.num_faces < 1 or a.num_map < 2 or a.top < 1:
        raise SystemExit("--num-faces and --top must be >= 1 and --num-map >= 2")
    data = Path(a.data)
    test_recs = load_records(data, a.split)[: a.num_faces]
    train_recs = load_records(data, "train")[: a.num_map]
    if not test_recs or not train_recs:
        raise SystemExit(f"{data}: needs records in split {a.split!r} and in 'train'")

    result: dict = {"data": str(data), "split": a.split, "top": a.top, "runs": {}}
    for bundle in a.checkpoint:
        pipe = Unif2acePipeline.from_pretrained(bundle)

        if a.top > pipe.num_image_tokens:
            raise SystemExit(f"--top {a.top} exceeds the bundle's {pipe.num_image_tokens} image tokens")
        train_codes, test_codes = _encode(pipe, data, train_recs), _encode(pipe, data, test_recs)
        rows = measure(pipe, train_recs, train_codes, test_recs, test_codes, a.top)
        result["runs"][str(bundle or "faces-tiny (packaged)")] = {"model_hash": pipe.model_hash, **rows}
        for key, row in rows.items():
            print(
                f"{bundle or 'faces-tiny'} {key} ({row['faces']} faces): flip {row['flip_at_attribute']:+.4f} at the "
                f"attribute, {row['flip_elsewhere']:+.4f} elsewhere; vs empty {row['vs_empty_at_attribute']:+.4f}"
            )
    atomic_write_json(a.out, result)
    return result


if __name__ == "__main__":
    main()
