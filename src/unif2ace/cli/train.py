"""``unif2ace train`` (staged recipes, resumable) and ``unif2ace routing`` (expert-usage heatmap of a checkpoint).

Argument plumbing only: the work is done by :func:`unif2ace.training.run.run_training` and
:func:`unif2ace.training.routing_report.routing_report`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from unif2ace.training.run import load_recipe, run_training

    cfg = load_recipe(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = run_training(cfg, out, init_from=args.init_from, cpu=True if args.cpu else None, stop_after=args.max_steps)
    loss = f"{result.last_loss:.6f}" if result.losses else "n/a"
    if int(os.environ.get("RANK", "0")) == 0:  # one summary line per job, not per process
        print(f"step {result.global_step}/{cfg.total_steps}  last loss {loss}  checkpoint {result.checkpoint}")
    return 0


def _routing(args: argparse.Namespace) -> int:
    from unif2ace.training.routing_report import routing_report

    png = routing_report(args.checkpoint, out_png=args.out, overrides=args.overrides, num_batches=args.batches)
    print(f"wrote {png}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``routing`` to the ``unif2ace`` parser."""
    p = subparsers.add_parser(
        "train",
        help="train a model with a staged recipe (resumes automatically)",
        description="Run every stage of a recipe in order; re-running the same command "
        "resumes from the newest complete checkpoint in --out.",
    )
    p.add_argument("--config", required=True, help="recipe YAML, or a shipped name such as train_tiny_cpu")
    p.add_argument("--init-from", default=None, help="initial weights: a checkpoint or (converted) model folder")
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is visible")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many optimizer steps of this invocation (a checkpoint is written)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.seed=1")
    p.set_defaults(func=_train)

    r = subparsers.add_parser("routing", help="per-layer expert usage heatmap of a checkpoint (both MoE levels)")
    r.add_argument("checkpoint", help="a step-* checkpoint folder written by unif2ace train")
    r.add_argument("--out", default=None, help="PNG path (default: CHECKPOINT/routing.png)")
    r.add_argument("--batches", type=int, default=2, help="fixed micro-batches to route (default 2)")
    r.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides of the checkpoint's recipe (e.g. data.records=... on another machine)",
    )
    r.set_defaults(func=_routing)
