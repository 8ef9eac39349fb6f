"""What samplers need from a model, as callables: samplers never import the transformer.

* :class:`ImageLogitsFn` - MaskGIT / ancestral samplers: current image ids -> codebook logits.
* :class:`DecodeStepFn` - text decoding: new ids + cache -> next-token logits + cache.
The pipeline (``unif2ace.sampling.engine``) adapts the transformer to these.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor


class ImageLogitsFn(Protocol):
    """``fn(image_ids, cond) -> logits``.

    Args:
        image_ids: ``(B, N)`` long codebook indices in ``[0, C)``, or ``C`` (the mask code) where unknown.
        cond: True for the conditional branch, False for the unconditional (CFG) branch.

    Returns:
        ``(B, N, C)`` float logits over the C codebook entries (mask column excluded).
    """

    def __call__(self, image_ids: Tensor, cond: bool) -> Tensor:
        """Codebook logits ``(B, N, C)`` for the current ids; ``cond=False`` gives the unconditional branch."""
        ...


class DecodeStepFn(Protocol):
    """``fn(ids, cache) -> (logits, cache)``: feed ``ids`` ``(B, T)``, get next-token logits ``(B, V)``.

    The first call passes the whole prompt with ``cache=None``; every later call passes the ``(B, 1)`` token just
    chosen and the cache returned by the previous call. ``logits`` are those of the last fed position.
    """

    def __call__(self, ids: Tensor, cache: Any) -> tuple[Tensor, Any]:
        """Feed ``ids`` after the cached context; return next-token logits ``(B, V)`` and the updated cache."""
        ...
