"""Helpers around the :class:`~unif2ace.model.interfaces.ImageEncoder` protocol (spec §3.3 feature experts).

Frozen encoders (semantic "CLIP-like", face identity) are run once per image and their features cached
(:class:`FeatureCache`, one safetensors file per feature kind keyed by image id). At training / inference time a
batch of image ids becomes a ``(B, T, E)`` tensor for ``RoutingContext.features[kind]``; images without features
(no face detected, no image at all) get an all-zero row, which the sequence MoE treats as "missing" (that expert
copies the row).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from unif2ace.model.interfaces import ImageEncoder
from unif2ace.utils.io import load_tensors, save_tensors

_FORMAT = "unif2ace.feature_cache.v1"


def _as_tokens(feats: Tensor, what: str) -> Tensor:
    """``(E,)`` -> ``(1, E)``; ``(T, E)`` unchanged; anything else is an error."""
    if feats.dim() == 1:
        return feats.unsqueeze(0)
    if feats.dim() != 2:
        raise ValueError(f"{what}: features must be (T, E) or (E,), got shape {tuple(feats.shape)}")
    return feats


def stack_features(items: Sequence[Tensor | None], shape: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """Stack per-image features into a batch, zero-filling missing ones.

    Args:
        items: per row a ``(T, E)`` (or ``(E,)``) tensor, or None when the image has no features.
        shape: ``(T, E)`` to use when every item is None.

    Returns:
        ``features`` ``(B, T, E)`` (zeros for missing rows) and ``present`` ``(B,)`` bool.

    Raises:
        ValueError: shapes differ between rows, or all rows are missing and ``shape`` is not given.
    """
    present_items = [_as_tokens(t, f"row {i}") for i, t in enumerate(items) if t is not None]
    if present_items:
        ref = present_items[0]
        for t in present_items:
            if t.shape != ref.shape:
                raise ValueError(f"stack_features: rows have shapes {tuple(ref.shape)} and {tuple(t.shape)}")
        shape, dtype, device = tuple(ref.shape), ref.dtype, ref.device
    elif shape is None:
        raise ValueError("stack_features: every row is missing; pass shape=(T, E)")
    else:
        dtype, device = torch.float32, torch.device("cpu")
    out = torch.zeros(len(items), *shape, dtype=dtype, device=device)  # (B, T, E)
    present = torch.tensor([t is not None for t in items], dtype=torch.bool, device=device)
    for i, t in enumerate(items):
        if t is not None:
            out[i] = _as_tokens(t, f"row {i}")
    return out, present


@torch.no_grad()
def encode_images(encoder: ImageEncoder, images: Tensor) -> Tensor:
    """Run a frozen encoder and check its output against the protocol.

    Args:
        encoder: object with ``name``, ``dim`` and ``encode``.
        images: ``(B, 3, H, W)`` in ``[-1, 1]``.

    Returns:
        ``(B, T, E)`` features with ``E == encoder.dim``.

    Raises:
        ValueError: the encoder returned another shape.
    """
    feats = encoder.encode(images)
    if feats.dim() != 3 or feats.shape[0] != images.shape[0] or feats.shape[-1] != encoder.dim:
        raise ValueError(
            f"encoder {encoder.name!r} returned shape {tuple(feats.shape)}; expected ({images.shape[0]}, T, "
            f"{encoder.dim})"
        )
    return feats


class FeatureCache:
    """Precomputed features of one kind, keyed by image id, stored as one safetensors file.

    Args:
        name: feature kind (``"clip"``, ``"face"``), the key used in ``RoutingContext.features``.
        features: optional initial mapping image id -> ``(T, E)`` (or ``(E,)``) tensor.
    """

    def __init__(self, name: str, features: Mapping[str, Tensor] | None = None) -> None:
        self.name = name
        self._features: dict[str, Tensor] = {}
        for image_id, feats in (features or {}).items():
            self.add(image_id, feats)

    @property
    def shape(self) -> tuple[int, int] | None:
        """``(T, E)`` of every entry (None while empty)."""
        first = next(iter(self._features.values()), None)
        return None if first is None else (first.shape[0], first.shape[1])

    def __len__(self) -> int:
        return len(self._features)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._features

    def add(self, image_id: str, feats: Tensor) -> None:
        """Store the features of one image (detached, on CPU).

        Raises:
            ValueError: the shape differs from the entries already stored.
        """
        feats = _as_tokens(feats.detach().cpu(), f"feature cache {self.name!r}, image {image_id!r}")
        if self.shape is not None and tuple(feats.shape) != self.shape:
            raise ValueError(
                f"feature cache {self.name!r}: image {image_id!r} has shape {tuple(feats.shape)}, "
                f"cache holds {self.shape}"
            )
        self._features[image_id] = feats.contiguous()

    def get(self, image_id: str) -> Tensor | None:
        """``(T, E)`` features of ``image_id`` or None."""
        return self._features.get(image_id)

    def lookup(self, image_ids: Sequence[str | None]) -> tuple[Tensor, Tensor]:
        """Batch of features for ``image_ids`` (None or unknown ids -> zeros, ``present`` False).

        Returns:
            ``features`` ``(B, T, E)`` and ``present`` ``(B,)`` bool.

        Raises:
            ValueError: the cache is empty (the feature shape is unknown).
        """
        if self.shape is None:
            raise ValueError(f"feature cache {self.name!r} is empty; build it before looking up images")
        return stack_features([None if i is None else self.get(i) for i in image_ids], shape=self.shape)

    def save(self, path: str | Path) -> None:
        """Write all entries to ``path`` (safetensors, atomically) with the kind in the metadata."""
        save_tensors(path, self._features, metadata={"format": _FORMAT, "name": self.name})

    @classmethod
    def load(cls, path: str | Path) -> FeatureCache:
        """Read a cache written by :meth:`save`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a feature cache.
        """
        tensors = load_tensors(path)
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("format") != _FORMAT or "name" not in meta:
            raise ValueError(f"{path} is not a unif2ace feature cache (missing metadata); rebuild it with FeatureCache")
        return cls(meta["name"], tensors)

    @classmethod
    def from_encoder(
        cls, encoder: ImageEncoder, items: Iterable[tuple[str, Tensor]], batch_size: int = 32
    ) -> FeatureCache:
        """Encode images once and cache their features.

        Args:
            encoder: frozen :class:`ImageEncoder`; its ``name`` becomes the cache kind.
            items: ``(image_id, (3, H, W) image in [-1, 1])`` pairs; all images of a batch must share a size.
            batch_size: images per encoder call.
        """
        cache = cls(encoder.name)
        batch: list[tuple[str, Tensor]] = []
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                cache._add_batch(encoder, batch)
                batch = []
        if batch:
            cache._add_batch(encoder, batch)
        return cache

    def _add_batch(self, encoder: ImageEncoder, batch: list[tuple[str, Tensor]]) -> None:
        feats = encode_images(encoder, torch.stack([img for _, img in batch]))  # (b, T, E)
        for (image_id, _), f in zip(batch, feats, strict=True):
            self.add(image_id, f)
