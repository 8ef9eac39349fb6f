"""Key/value cache for incremental decoding and for re-using a text prefix across MaskGIT steps.

Keys are stored after RoPE, so cached entries never need their positions again. Semantics used by
:meth:`Unif2aceTransformer.forward`: with ``use_cache=True`` the new keys/values are appended to the cache (in
place) and the same object is returned; with ``use_cache=False`` a given cache is only read. That makes
"prefix once, then many image-only forwards" a read-only use of one cache.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Per-layer ``(B, H, T, hd)`` key and value tensors.

    Args:
        num_layers: number of transformer blocks.
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    def __len__(self) -> int:
        """Number of cached positions (0 when empty)."""
        return 0 if self.keys[0] is None else int(self.keys[0].shape[2])

    @property
    def batch_size(self) -> int:
        """Rows held by the cache (0 when empty)."""
        return 0 if self.keys[0] is None else int(self.keys[0].shape[0])

    def get(self, layer: int) -> tuple[Tensor | None, Tensor | None]:
        """Cached ``(k, v)`` of ``layer`` (``None`` when empty)."""
        return self.keys[layer], self.values[layer]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v`` ``(B, H, T_new, hd)`` to ``layer`` and return the full ``(k, v)``."""
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None:
            k = torch.cat((old_k, k), dim=2)
            v = torch.cat((old_v, v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def clone(self) -> KVCache:
        """An independent copy (tensors are shared until appended to, since appends re-allocate)."""
        out = KVCache(len(self.keys))
        out.keys, out.values = list(self.keys), list(self.values)
        return out

    def select(self, rows: Tensor) -> KVCache:
        """A cache holding only batch ``rows`` (a long index tensor, may repeat rows)."""
        out = KVCache(len(self.keys))
        out.keys = [None if k is None else k.index_select(0, rows) for k in self.keys]
        out.values = [None if v is None else v.index_select(0, rows) for v in self.values]
        return out

    def crop(self, length: int) -> None:
        """Keep only the first ``length`` positions."""
        self.keys = [None if k is None else k[:, :, :length] for k in self.keys]
        self.values = [None if v is None else v[:, :, :length] for v in self.values]
