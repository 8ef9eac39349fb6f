"""Shared test fixtures: the reference fixture folder and deterministic torch settings."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("UNIF2ACE_FIXTURES", REPO.parent / "shared" / "fixtures" / "reference"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder of the upstream golden tensors (``../shared/fixtures/reference``); skip if absent."""
    if not (FIXTURES / "manifest.json").is_file():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (set UNIF2ACE_FIXTURES)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A random tiny model bundle (``unif2ace.pipeline.create_random_bundle``, seed 0, 64 px, 64 tokens)."""
    from unif2ace.pipeline import create_random_bundle

    return create_random_bundle(tmp_path_factory.mktemp("bundle") / "random-tiny", seed=0)


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    """A CPU pipeline over :func:`tiny_bundle` (one per test module)."""
    from unif2ace import Unif2acePipeline

    return Unif2acePipeline.from_pretrained(tiny_bundle, device="cpu")


@pytest.fixture(scope="module")
def face():
    """The first built-in example face as an RGB PIL image."""
    from PIL import Image

    from unif2ace.pipeline.demo import example_faces

    return Image.open(example_faces()[0]).convert("RGB")


@pytest.fixture(scope="session")
def load_benchmark():
    """Import a script of ``benchmarks/`` by file name (the folder is not a package): ``load_benchmark("x.py")``."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(Path(name).stem, REPO / "benchmarks" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
