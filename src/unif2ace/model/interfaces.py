"""Contracts between the transformer and the modules injected into it (FFNs / MoEs, feature encoders).

The transformer owns attention and the residual stream; its feed-forward slot and its optional sequence-level
slot are filled by injected modules that follow :class:`FeedForward` and :class:`SequenceMixer`. Per-forward
information that those modules need (task group of each row, which positions are real tokens / image tokens,
precomputed encoder features, a generator for the noise expert) travels in a :class:`RoutingContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class RoutingContext:
    """Per-forward side information for grouped MoEs.

    Attributes:
        group_ids: ``(B,)`` long, task group of each row: 0 = understanding (MMU), 1 = generation (T2I).
        valid: ``(B, L)`` bool, True at real (non-pad) tokens of the positions being computed.
        image_mask: ``(B, L)`` bool, True at image-token positions (between ``<|soi|>`` and ``<|eoi|>``).
        pool_mask: ``(B, Lp)`` bool or None; positions whose hidden states the sequence router pools over.
            It covers the *condition* only (T2I: the text prompt; MMU: task token + image), so routing does not
            change while image tokens are sampled or answer tokens decoded, which keeps prefix / KV caches exact.
        features: name -> ``(B, T, E)`` frozen-encoder features (``"clip"``, ``"face"``), precomputed or cached.
        generator: RNG for the noise expert (the same draw is used for a CFG cond/uncond pair).
        force_seq_experts: optional ``(B, k)`` long expert indices overriding the sequence router (tests,
            ablations); gate weights are then uniform.
        routing_cache: filled by sequence mixers with their per-row decisions so that a later forward that
            only computes new positions (KV cache) re-uses them; keyed by layer index.
    """

    group_ids: Tensor
    valid: Tensor
    image_mask: Tensor | None = None
    pool_mask: Tensor | None = None
    features: dict[str, Tensor] = field(default_factory=dict)
    generator: torch.Generator | None = None
    force_seq_experts: Tensor | None = None
    routing_cache: dict[int, dict[str, Tensor]] = field(default_factory=dict)


@dataclass
class MixerOutput:
    """Output of an injected feed-forward or sequence module.

    Attributes:
        hidden: ``(B, L, D)`` output.
        aux_loss: scalar auxiliary loss (balance terms, already multiplied by their lambda), 0 if none.
        routing: diagnostics for the routing report, e.g. ``{"token_counts": (G, N) tensor}`` or
            ``{"seq_experts": (B, k) long}``. Values are detached.
    """

    hidden: Tensor
    aux_loss: Tensor
    routing: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class FeedForward(Protocol):
    """The block's feed-forward slot: dense MLP or grouped token-level MoE.

    ``forward(x, ctx)`` maps the normed hidden states ``x`` ``(B, L, D)`` to ``(B, L, D)``.
    """

    def __call__(self, x: Tensor, ctx: RoutingContext | None) -> MixerOutput:  # noqa: D102
        ...


@runtime_checkable
class SequenceMixer(Protocol):
    """The optional slot after each block: grouped sequence-level MoE.

    ``forward(x, ctx, layer_idx, block_input)`` maps the block's output residual stream ``x`` ``(B, L, D)`` to
    the new residual stream. Expert semantics (spec §3.3, our [INF] choice): ``copy`` returns ``x`` unchanged (so
    a model with forced copy routing equals the model without sequence MoE); ``zero`` discards this layer's
    update for the sequence, i.e. returns ``block_input``; feature experts (``clip``, ``face``, ``noise``) return
    the gated form ``w * x + (1 - w) * S(F(X))`` at image positions (placement ``image``) and ``x`` elsewhere.
    """

    def __call__(self, x: Tensor, ctx: RoutingContext, layer_idx: int, block_input: Tensor) -> MixerOutput:  # noqa: D102
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    """A frozen image encoder used by sequence-level feature experts (CLIP-like, face identity).

    ``encode(images)`` takes ``(B, 3, H, W)`` float images in ``[-1, 1]`` and returns ``(B, T, E)`` features
    (``T = 1`` for a single embedding). ``name`` is the feature key (``"clip"`` / ``"face"``) and ``dim`` = E.
    """

    name: str
    dim: int

    def encode(self, images: Tensor) -> Tensor:  # noqa: D102
        ...
