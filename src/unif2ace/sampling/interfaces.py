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

    def __call__(self, image_ids: Tensor, cond: bool) -> Tensor: ...


class DecodeStepFn(Protocol):
    """``fn(ids, cache) -> (logits, cache)``: feed ``ids`` ``(B, T)``, get next-token logits ``(B, V)``."""

    def __call__(self, ids: Tensor, cache: Any) -> tuple[Tensor, Any]: ...
