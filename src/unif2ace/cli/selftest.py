"""``unif2ace selftest``: train a tiny UniF²ace on a toy task for seconds, then generate and caption."""

from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    from unif2ace.training.selftest import run_selftest

    report = run_selftest(steps=args.steps, seed=args.seed)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("unif2ace selftest — a toy memorisation task (not a face model), end to end on this machine:")
        print(f"  model: {report.parameters:,} parameters (token MoE + sequence MoE), {report.steps} AdamW steps")
        print(f"  loss (D3Diff + caption CE + balance): {report.loss_first:.3f} -> {report.loss_last:.3f}")
        print(f"  text-to-image (MaskGIT + CFG, prefix KV cache): {report.t2i_token_accuracy:.1%} tokens correct")
        print(f"  captioning (KV-cached greedy decoding): {report.caption_token_accuracy:.1%} tokens correct")
        print(f"  time: train {report.train_seconds:.1f} s, generate + caption {report.generate_seconds:.2f} s")
    ok = report.t2i_token_accuracy >= 0.9 and report.caption_token_accuracy >= 0.9
    if not ok:
        print("selftest: accuracies below 90 % — something in the stack is broken")
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``selftest``."""
    p = sub.add_parser("selftest", help="train a tiny model on a toy task, then generate and caption (seconds)")
    p.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data and sampling")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)
