"""unif2ace: fine-grained face understanding and generation with one unified transformer (UniF²ace)."""

__version__ = "0.1.0"

__all__ = ["Unif2acePipeline", "__version__"]


def __getattr__(name: str):
    """Lazy ``from unif2ace import Unif2acePipeline`` (importing the package stays light for the CLI)."""
    if name == "Unif2acePipeline":
        from unif2ace.pipeline import Unif2acePipeline

        return Unif2acePipeline
    raise AttributeError(f"module 'unif2ace' has no attribute {name!r}")
