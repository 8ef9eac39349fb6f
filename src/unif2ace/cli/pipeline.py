"""``unif2ace generate | caption | ask | edit | demo | export``: the pipeline from the shell (plumbing only).

Examples::

    unif2ace generate "A smiling woman with red hair" --num-images 4 --seed 7 --out outputs
    unif2ace caption face.png
    unif2ace ask face.png "Is the person wearing glasses?"
    unif2ace edit face.png "A man with short grey hair" --region hair --seed 3
    unif2ace demo --out demo && xdg-open demo/index.html
    unif2ace export runs/faces_tiny --vq runs/vq_faces_64 --ema --out src/unif2ace/weights/faces-tiny

Every command writes PNG / JSON (prompt, seed, steps, model hash) into ``--out`` and, with ``--json``, prints one
JSON object on stdout instead of human-readable lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _pipeline(args: argparse.Namespace) -> Any:
    from unif2ace.pipeline import Unif2acePipeline

    return Unif2acePipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)


class _Bar:
    """Progress bar for the pipeline's step callback (opened at the first step; no image previews are decoded)."""

    wants_images = False

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled, self.desc, self.bar = enabled, desc, None

    def __call__(self, step: int, total: int, images: Any) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr, leave=False)
        self.bar.total = total
        self.bar.n = step
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        for line in lines:
            print(line)


def _generate(args: argparse.Namespace) -> int:
    pipe = _pipeline(args)
    bar = _Bar(not args.no_progress and not args.json, "generate")
    try:
        out = pipe.generate(
            args.prompt,
            num_images=args.num_images,
            steps=args.steps,
            guidance_scale=args.guidance,
            negative_prompt=args.negative_prompt,
            seed=args.seed,
            schedule=args.schedule,
            temperature=args.temperature,
            callback=bar,
        )
    finally:
        bar.close()
    paths = out.save(args.out, f"generate-{out.seeds[0]}")
    data = {**out.metadata, "prompts": out.prompts, "files": [str(p) for p in paths]}
    _emit(args, data, [f"wrote {p}" for p in paths])
    return 0


def _edit(args: argparse.Namespace) -> int:
    pipe = _pipeline(args)
    regions = [r.strip() for r in args.region.split(",")] if args.region else None
    out = pipe.edit(
        args.image, args.prompt, region=regions, mask=args.mask, seed=args.seed, steps=args.steps,
        guidance_scale=args.guidance,
    )  # fmt: skip
    paths = out.save(args.out, f"edit-{out.seeds[0]}")
    data = {**out.metadata, "prompts": out.prompts, "image": str(args.image), "files": [str(p) for p in paths]}
    _emit(args, data, [f"wrote {p}" for p in paths])
    return 0


def _text(args: argparse.Namespace, question: str | None) -> int:
    pipe = _pipeline(args)
    stream = None if args.json else (lambda piece: print(piece, end="", flush=True))
    if question is None:
        out = pipe.caption(args.image, max_new_tokens=args.max_new_tokens, seed=args.seed, text_callback=stream)
        stem = "caption"
    else:
        out = pipe.ask(args.image, question, max_new_tokens=args.max_new_tokens, seed=args.seed, text_callback=stream)
        stem = "ask"
    path = out.save(args.out, f"{stem}-{out.metadata['seed']}")
    if args.json:
        print(json.dumps({"text": out.text, **out.metadata, "image": str(args.image), "file": str(path)}))
    else:
        print()
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from unif2ace.pipeline.demo import run_demo

    pipe = _pipeline(args)
    say = None if args.json else (lambda msg: print(f"demo: {msg}", file=sys.stderr))
    page = run_demo(pipe, args.out, seed=0 if args.seed is None else args.seed, steps=args.steps,
                    guidance=args.guidance, progress=say)  # fmt: skip
    _emit(args, {"page": str(page), "model": pipe.name, "model_hash": pipe.model_hash}, [f"open {page}"])
    return 0


def _export(args: argparse.Namespace) -> int:
    from unif2ace.pipeline.bundle import RecipeInfo, export_bundle, read_bundle_info

    recipe = None
    if args.steps is not None or args.guidance is not None:
        recipe = RecipeInfo()
        recipe.steps = recipe.steps if args.steps is None else args.steps
        recipe.guidance_scale = recipe.guidance_scale if args.guidance is None else args.guidance
    out = export_bundle(args.checkpoint, args.vq, args.out, use_ema=args.ema, name=args.name, recipe=recipe,
                       storage_dtype=args.storage_dtype)  # fmt: skip
    info = read_bundle_info(out)
    from unif2ace.pipeline import Unif2acePipeline

    Unif2acePipeline.from_pretrained(out, device="cpu")  # the bundle must load before we call it done
    ema = "EMA" if info.provenance.get("ema") else "raw"
    _emit(args, info.to_dict(), [f"exported {ema} weights to {out} (model hash {info.model_hash[:16]}...)"])
    return 0


def _common(p: argparse.ArgumentParser, sampling: bool = True) -> None:
    p.add_argument("--model", default=None, help="bundle folder (default: the shipped faces-tiny model)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: a fresh one, written to the JSON)")
    if sampling:
        p.add_argument("--steps", type=int, default=None, help="MaskGIT steps (default: the bundle's recipe)")
        p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (0 = off)")
    p.add_argument("--out", default="outputs", help="output folder for PNG / JSON (default: outputs)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="float32 (default), bfloat16 or float16")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``generate``, ``caption``, ``ask``, ``edit``, ``demo`` and ``export``."""
    p = subparsers.add_parser("generate", help="faces from a text prompt")
    p.add_argument("prompt", help="description of the face")
    p.add_argument("--num-images", type=int, default=1)
    p.add_argument("--negative-prompt", default=None, help="text to steer away from (CFG)")
    p.add_argument("--schedule", default=None, help="mask schedule: cosine, linear, pow2 ...")
    p.add_argument("--temperature", type=float, default=None, help="MaskGIT re-masking temperature")
    _common(p)
    p.set_defaults(func=_generate)

    p = subparsers.add_parser("caption", help="describe a face image")
    p.add_argument("image", help="face image file")
    p.add_argument("--max-new-tokens", type=int, default=None)
    _common(p, sampling=False)
    p.set_defaults(func=lambda a: _text(a, None))

    p = subparsers.add_parser("ask", help="answer a question about a face image")
    p.add_argument("image", help="face image file")
    p.add_argument("question", help="question about the face")
    p.add_argument("--max-new-tokens", type=int, default=None)
    _common(p, sampling=False)
    p.set_defaults(func=lambda a: _text(a, a.question))

    p = subparsers.add_parser("edit", help="regenerate a face region with a new prompt")
    p.add_argument("image", help="face image file")
    p.add_argument("prompt", help="description of the edited face")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--region", help="hair, eyes, eyebrows, nose, mouth, skin, ears, background, accessories "
                                        "(comma-separated for several)")  # fmt: skip
    group.add_argument("--mask", help="mask image of the input's size (white = regenerate)")
    _common(p)
    p.set_defaults(func=_edit)

    p = subparsers.add_parser("demo", help="run all four tasks on built-in example faces; writes an HTML page")
    _common(p)
    p.set_defaults(func=_demo, out="demo")

    p = subparsers.add_parser("export", help="make a model bundle from a training checkpoint")
    p.add_argument("checkpoint", help="checkpoint folder (step-XXXXXXX) or run folder (its latest checkpoint)")
    p.add_argument("--vq", required=True, help="image tokenizer folder or VQ run folder")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--ema", action="store_true", help="use the EMA weights when the checkpoint has them")
    p.add_argument("--name", default=None, help="bundle name (default: the folder name)")
    p.add_argument("--steps", type=int, default=None, help="default MaskGIT steps of the bundle")
    p.add_argument("--guidance", type=float, default=None, help="default guidance scale of the bundle")
    p.add_argument(
        "--storage-dtype",
        default="float32",
        choices=["float32", "float16"],
        help="dtype the model weights are stored in (float16 halves the file, loads as float32)",
    )
    p.add_argument("--json", action="store_true", help="print bundle.json instead of a summary")
    p.set_defaults(func=_export)
