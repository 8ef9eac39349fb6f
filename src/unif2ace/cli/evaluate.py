"""``unif2ace eval`` and ``unif2ace ablate``: the evaluation harness and the paper's ablation grid.

Examples::

    unif2ace eval --checkpoint runs/bundle --data data/faces-mini/records.jsonl --out runs/eval [--quick]
    unif2ace ablate --out runs/ablate --steps 300
"""

from __future__ import annotations

import argparse
import json

SKIPPABLE = ("fid", "meteor", "attributes", "edits", "judge", "vqascore", "alignment")


def _skip_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in SKIPPABLE]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown metric family {bad[0]!r}; choose from {', '.join(SKIPPABLE)}")
    return names


def _eval(args: argparse.Namespace) -> int:
    from unif2ace.evaluation.harness import EvalSettings, run_eval

    opts = {
        "split": args.split,
        "seed": args.seed,
        "judge": not args.no_judge,
        "vqascore_model": args.vqascore_model,
        "device": args.device,
        "skip": args.skip,
        "extra": {"quick": args.quick},
    }
    for name in ("num_prompts", "num_understanding", "num_edits", "steps", "guidance_scale"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    settings = EvalSettings.quick(**opts) if args.quick else EvalSettings(**opts)
    report = run_eval(args.checkpoint, args.data, args.out, settings)
    for section in ("generation", "understanding", "edits"):
        metrics = (report.get(section) or {}).get("metrics", {})
        shown = {k: v for k, v in metrics.items() if "/" not in k}
        print(
            f"{section}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        )
    for line in report["skipped"]:
        print(f"skipped: {line}")
    print(f"report: {args.out}/report.md ({report['wall_time_s']:.0f} s)")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from unif2ace.evaluation.ablate import AblationSettings, run_ablation

    settings = AblationSettings(args.steps, args.data, args.vq, args.eval_items, args.toy)
    result = run_ablation(args.out, settings, only=args.only)
    print(result["tables_markdown"])
    print(json.dumps({"wall_time_s": round(result["wall_time_s"], 1), "out": str(args.out)}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``ablate``."""
    p = subparsers.add_parser("eval", help="evaluate a model bundle: report.json, report.md and plots")
    p.add_argument("--checkpoint", required=True, help="bundle folder (unif2ace export)")
    p.add_argument("--data", required=True, help="records file with captions, attributes, VQA and images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="a few items of everything (8 prompts, 6 faces, 2 edits)")
    p.add_argument("--split", default="test", help="records split (default test)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed recorded in the report")
    p.add_argument("--steps", type=int, help="MaskGIT steps (default: the bundle's recipe)")
    p.add_argument("--guidance-scale", type=float, dest="guidance_scale", help="CFG scale (default: the recipe's)")
    p.add_argument("--num-prompts", type=int, dest="num_prompts", help="text-to-face prompts (default: all)")
    p.add_argument("--num-understanding", type=int, dest="num_understanding", help="faces captioned / asked")
    p.add_argument("--num-edits", type=int, dest="num_edits", help="region edits for identity preservation")
    p.add_argument("--vqascore-model", dest="vqascore_model", help="local VLM folder for VQAScore")
    p.add_argument("--no-judge", action="store_true", help="do not call the LLM / VLM judge API")
    p.add_argument("--skip", type=_skip_list, default=(), help=f"comma list of: {', '.join(SKIPPABLE)}")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    p.set_defaults(func=_eval)

    a = subparsers.add_parser("ablate", help="train + evaluate the paper's D3Diff and MoE ablation grids")
    a.add_argument("--out", required=True, help="output folder (one run per variant; resumable)")
    a.add_argument("--steps", type=int, default=None, help="optimizer steps per variant (default: sized for 40 min)")
    a.add_argument("--data", default=None, help="records file (default: data/faces-mini/records.jsonl)")
    a.add_argument("--vq", default=None, help="trained image tokenizer folder (not needed with --toy)")
    a.add_argument("--eval-items", type=int, default=None, dest="eval_items", help="test faces / prompts per variant")
    a.add_argument("--only", nargs="*", default=None, help="run only these variants (names as in the tables)")
    a.add_argument("--toy", action="store_true", help="a tiny model and grid for tests (seconds)")
    a.set_defaults(func=_ablate)
