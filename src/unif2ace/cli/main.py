"""The ``unif2ace`` console script: argument plumbing only; every command calls library functions.

Each command family lives in its own module exposing ``register(subparsers)``; add new modules to
``COMMAND_MODULES``. User errors (bad input, missing files, bad configs) end with a one-line message and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: tuple[str, ...] = (
    "unif2ace.cli.selftest",
    "unif2ace.cli.convert",
    "unif2ace.cli.data",
    "unif2ace.cli.vq",
    "unif2ace.cli.train",
    "unif2ace.cli.serve",
    "unif2ace.cli.pipeline",
    "unif2ace.cli.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    from unif2ace import __version__

    parser = argparse.ArgumentParser(
        prog="unif2ace", description="UniF²ace: unified face understanding and generation."
    )
    parser.add_argument("--version", action="version", version=f"unif2ace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"unif2ace {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unif2ace {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
