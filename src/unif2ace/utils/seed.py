"""Seeding helpers: one place that turns an int seed into generators and global RNG state."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator | None:
    """A ``torch.Generator`` seeded with ``seed`` on ``device`` (``None`` -> ``None``).

    Raises:
        ValueError: ``seed`` is negative or not an int.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed >= 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
