"""unif2ace: fine-grained face understanding and generation with one unified transformer (UniF²ace)."""

__version__ = "0.1.0"
