"""Output dataclasses of the pipeline and how they are written to disk (PNG + JSON metadata)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from unif2ace.utils.io import atomic_path, atomic_write_json

__all__ = ["GenerationOutput", "TextOutput", "save_image"]


@dataclass
class GenerationOutput:
    """Faces from :meth:`~unif2ace.pipeline.Unif2acePipeline.generate` or ``.edit``.

    Attributes:
        images: one RGB image per generated face.
        codes: ``(N, T)`` long image codes (``T`` tokens per face).
        seeds: the seed of each image's call (all images of one call share its generator).
        prompts: the prompt of each image.
        metadata: model hash, bundle name, steps, guidance, seed, schedule, ... (JSON-able).
        token_mask: for edits, ``(T,)`` bool, True = regenerated token.
        mask: for edits, the pixel footprint of ``token_mask`` as an ``L`` image (255 = regenerated).
    """

    images: list[Image.Image]
    codes: Tensor
    seeds: list[int]
    prompts: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    token_mask: Tensor | None = None
    mask: Image.Image | None = None

    def save(self, folder: str | Path, stem: str = "image") -> list[Path]:
        """Write ``{stem}-{i}.png`` per image and ``{stem}.json`` (metadata + file names); returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, img in enumerate(self.images):
            paths.append(folder / f"{stem}-{i}.png")
            save_image(img, paths[-1])
        meta = {**self.metadata, "prompts": self.prompts, "seeds": self.seeds, "files": [p.name for p in paths]}
        if self.mask is not None:
            paths.append(folder / f"{stem}-mask.png")
            save_image(self.mask, paths[-1])
            meta["mask_file"] = paths[-1].name
        atomic_write_json(folder / f"{stem}.json", meta)
        return [*paths, folder / f"{stem}.json"]


@dataclass
class TextOutput:
    """A caption or an answer.

    Attributes:
        text: the decoded text.
        metadata: model hash, bundle name, question, seed, token count, ... (JSON-able).
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path, stem: str = "text") -> Path:
        """Write ``{stem}.json`` with the text and the metadata; returns its path."""
        path = Path(folder) / f"{stem}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"text": self.text, **self.metadata})
        return path


def save_image(img: Image.Image, path: str | Path) -> None:
    """Write a PNG atomically (no timestamps or other varying chunks: equal images give equal bytes)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
