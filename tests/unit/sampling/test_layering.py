"""Samplers and losses stay outside the network: they never import model/, training/ or data/ (STYLE habit 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "unif2ace"
FORBIDDEN = ("unif2ace.model", "unif2ace.training", "unif2ace.data", "unif2ace.serving", "unif2ace.cli")


@pytest.mark.parametrize("package", ["losses", "sampling"])
def test_no_upward_imports(package):
    for path in sorted((SRC / package).glob("*.py")):
        if path.name == "engine.py":  # the pipeline glue adapts the transformer by design
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith(FORBIDDEN)]
            assert not bad, f"{path.name} imports {bad}"
