"""``unif2ace convert showo``: Show-o checkpoint -> our ``model.safetensors`` + ``config.json``."""

from __future__ import annotations

import argparse


def _convert_showo(args: argparse.Namespace) -> int:
    from unif2ace.compat.showo import convert_showo

    out = convert_showo(args.weights, args.config, args.out, moe=args.moe)
    print(f"wrote {out / 'model.safetensors'} and {out / 'config.json'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``convert`` and its ``showo`` subcommand."""
    conv = sub.add_parser("convert", help="convert upstream checkpoints to the unif2ace format")
    kinds = conv.add_subparsers(dest="kind", metavar="KIND", required=True)
    showo = kinds.add_parser("showo", help="a Show-o checkpoint (safetensors or .bin) + its config JSON")
    showo.add_argument("--weights", required=True, help="Show-o weights: model.safetensors or pytorch_model.bin")
    showo.add_argument("--config", required=True, help="config JSON (Show-o + Phi fields, or the fixture layout)")
    showo.add_argument("--out", required=True, help="output directory (must not hold a model yet)")
    showo.add_argument("--moe", action="store_true", help="upcycle the dense MLPs into grouped token MoEs")
    showo.set_defaults(func=_convert_showo)
