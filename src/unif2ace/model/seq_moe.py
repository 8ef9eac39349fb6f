"""Grouped sequence-level mixture of experts (UniF²ace spec §3.3; gating form of MoE++ constant experts).

After each block, every sequence (row) picks ``k`` of its group's experts from a router over the mean of its
normed hidden states at the condition positions::

    r   = softmax(W_r^g mean_{t in pool}(LN_s(x_t)))        fp32 Linear(D, E, bias=False), one per group
    out = sum_{j in TopK(r)} r~_j E_j(x)                   r~ = top-k weights renormalised to sum to 1

Expert kinds (our [INF] residual semantics, see ``SequenceMixer``): ``copy`` returns the block output ``x``;
``zero`` returns the block input (this layer's update is discarded); feature experts ``clip`` / ``face`` / ``noise``
return ``w x + (1 - w) S(F)`` with a per-token gate ``w = softmax(W_g LN_s(x_t))[0]`` (``W_g``: Linear(D, 2)) and
``S`` the kind's Perceiver resampler, shared across layers, applied to ``ctx.features[kind]`` (``noise``:
``eps ~ N(0, I)`` of shape ``(B, 1, noise_dim)``).

Decisions ([INF], documented here once):

* Placement ``image``: resampled query ``q`` goes to the image positions of the row; the ``r``-th image position of
  the forward gets query ``floor(r * Q / n_img)`` (identity when ``num_queries`` equals the image-token count,
  nearest repeat / subsample otherwise). A forward must therefore contain all or none of a row's image tokens.
  Other positions are copied. Placement ``broadcast``: the mean of the ``Q`` resampled tokens at every position.
* Missing features: a row whose feature tensor is all zeros (what :func:`unif2ace.model.encoders.stack_features`
  writes for "no face detected") is copied by that expert. A routed feature kind absent from ``ctx.features`` is
  an error (pass zeros to mean "missing").
* Noise: one draw per :class:`RoutingContext` from ``ctx.generator`` (global RNG if None), stored as
  ``ctx.features["noise"]`` in a new dict (the caller's dict is not mutated) and re-used by every layer. A caller
  may pre-set ``features["noise"]`` (e.g. the same eps for a CFG cond/uncond pair).
* KV cache: a row's routing is recomputed whenever the forward contains at least one of its pool positions
  (``ctx.pool_mask``, else ``ctx.valid``), and taken from ``ctx.routing_cache[layer_idx]`` when it contains none
  (decode / MaskGIT steps over new positions only). A forward must contain all or none of a row's condition.
* Resamplers are shared across layers: the mixer built with ``owns_resamplers=True`` registers them (so the state
  dict holds each once), the others keep an unregistered reference to the same modules.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from unif2ace.config.model import GROUPS, SEQ_EXPERT_KINDS
from unif2ace.model.interfaces import MixerOutput, RoutingContext

FEATURE_KINDS = ("clip", "face", "noise")


class CopyExpert(nn.Module):
    """``E(x) = x``: keep the block output."""

    kind = "copy"

    def forward(self, x: Tensor, normed: Tensor, block_input: Tensor, ctx: RoutingContext, rows: Tensor) -> Tensor:
        """Return ``x`` ``(n, L, D)``."""
        return x


class ZeroExpert(nn.Module):
    """``E(x) = block_input``: discard this layer's update for the sequence."""

    kind = "zero"

    def forward(self, x: Tensor, normed: Tensor, block_input: Tensor, ctx: RoutingContext, rows: Tensor) -> Tensor:
        """Return ``block_input`` ``(n, L, D)``."""
        return block_input


class FeatureExpert(nn.Module):
    """Gated injection ``w x + (1 - w) S(F)`` of resampled features (``clip`` / ``face`` / ``noise``).

    Args:
        kind: feature key in ``ctx.features`` (and in the resampler dict).
        dim: model width ``D``.
        placement: ``"image"`` or ``"broadcast"`` (see module docstring).
        noise_dim: width of the Gaussian draw for ``kind == "noise"``.
    """

    def __init__(self, kind: str, dim: int, placement: str, noise_dim: int = 0) -> None:
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"feature expert kind must be one of {FEATURE_KINDS}, got {kind!r}")
        if placement not in ("image", "broadcast"):
            raise ValueError(f"seq_moe.placement must be 'image' or 'broadcast', got {placement!r}")
        self.kind = kind
        self.placement = placement
        self.noise_dim = noise_dim
        self.gate = nn.Linear(dim, 2, bias=False)

    def forward(
        self, x: Tensor, normed: Tensor, block_input: Tensor, ctx: RoutingContext, rows: Tensor, resampler: nn.Module
    ) -> Tensor:
        """Inject ``S(F)`` for rows ``rows`` of the batch.

        Args:
            x: ``(n, L, D)`` block output of the selected rows.
            normed: ``(n, L, D)`` ``LN_s(x)`` (gate input).
            block_input: ``(n, L, D)`` (unused).
            ctx: the full-batch routing context.
            rows: ``(n,)`` batch indices of the selected rows.
            resampler: ``S`` for this kind, ``(n, T, E) -> (n, Q, D)``.

        Returns:
            ``(n, L, D)``.
        """
        update = self.update(x, normed, ctx, rows, resampler)
        return x if update is None else x + update

    def update(
        self, x: Tensor, normed: Tensor, ctx: RoutingContext, rows: Tensor, resampler: nn.Module
    ) -> Tensor | None:
        """``E(x) - x = where(pos, (1 - w) (S(F) - x), 0)`` for rows ``rows``; None where it is 0 everywhere.

        Args and shapes as in :meth:`forward` (``x``, ``normed`` ``(n, L, D)``).
        """
        positions = self._positions(ctx, rows, x)  # (n, L)
        if not positions.any():
            return None
        feats = self._features(ctx, rows, x)  # (n, T, E)
        positions = positions & feats.flatten(1).ne(0).any(dim=1, keepdim=True)
        if not positions.any():
            return None
        tokens = resampler(feats.to(x.dtype))  # (n, Q, D)
        injected = self._place(tokens, positions, ctx, rows)  # (n, L, D)
        keep = self.gate(normed).float().softmax(dim=-1)[..., :1].to(x.dtype)  # (n, L, 1)
        return torch.where(positions.unsqueeze(-1), (1 - keep) * (injected - x), 0)

    def _positions(self, ctx: RoutingContext, rows: Tensor, x: Tensor) -> Tensor:
        if self.placement == "broadcast":
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if ctx.image_mask is None:
            raise ValueError(f"sequence expert {self.kind!r} with placement 'image' needs ctx.image_mask")
        return ctx.image_mask.to(x.device).index_select(0, rows)

    def _features(self, ctx: RoutingContext, rows: Tensor, x: Tensor) -> Tensor:
        if self.kind == "noise" and "noise" not in ctx.features:
            batch = ctx.group_ids.shape[0]
            device = ctx.generator.device if ctx.generator is not None else x.device
            eps = torch.randn(batch, 1, self.noise_dim, generator=ctx.generator, device=device)  # (B, 1, E)
            ctx.features = {**ctx.features, "noise": eps}
        if self.kind not in ctx.features:
            raise ValueError(
                f"sequence expert {self.kind!r} was routed to but ctx.features has no {self.kind!r} entry; "
                "pass precomputed features (all-zero rows mean 'missing')"
            )
        return ctx.features[self.kind].to(x.device).index_select(0, rows)

    def _place(self, tokens: Tensor, positions: Tensor, ctx: RoutingContext, rows: Tensor) -> Tensor:
        n, length = positions.shape
        if self.placement == "broadcast":
            return tokens.mean(dim=1, keepdim=True).expand(n, length, tokens.shape[-1])
        image = ctx.image_mask.to(tokens.device).index_select(0, rows)  # (n, L)
        rank = (image.long().cumsum(dim=1) - 1).clamp(min=0)  # (n, L) index among the row's image tokens
        n_img = image.long().sum(dim=1, keepdim=True).clamp(min=1)  # (n, 1)
        query = rank * tokens.shape[1] // n_img  # (n, L) in [0, Q)
        return tokens.gather(1, query.unsqueeze(-1).expand(n, length, tokens.shape[-1]))


def make_seq_expert(kind: str, dim: int, placement: str, noise_dim: int) -> nn.Module:
    """Build one sequence expert by kind (``copy``, ``zero``, ``clip``, ``face``, ``noise``).

    Raises:
        ValueError: unknown kind (the message lists the known ones).
    """
    if kind == "copy":
        return CopyExpert()
    if kind == "zero":
        return ZeroExpert()
    if kind in FEATURE_KINDS:
        return FeatureExpert(kind, dim, placement, noise_dim)
    raise ValueError(f"unknown sequence expert kind {kind!r}; choose from {', '.join(SEQ_EXPERT_KINDS)}")


class GroupedSequenceMoE(nn.Module):
    """Task-grouped sequence-level MoE implementing :class:`~unif2ace.model.interfaces.SequenceMixer`.

    Args:
        norm: ``LN_s`` applied before routing and gating (``nn.Identity()`` to skip).
        routers: group name -> :class:`~unif2ace.model.moe.TopKRouter` (renormalised) over that group's
            experts; all with the same ``top_k``.
        experts: group name -> ``nn.ModuleList`` of sequence experts (see :func:`make_seq_expert`).
        resamplers: feature kind -> resampler, shared across layers.
        owns_resamplers: register ``resamplers`` as submodules of this mixer (exactly one mixer per model should).
        balance_coef: lambda of the per-group sequence balance loss ``lambda sum_e f_e P_e`` (0 = off).

    Raises:
        ValueError: groups differ between routers and experts, router sizes or top-k mismatch, or a feature
            expert has no resampler.
    """

    def __init__(
        self,
        *,
        norm: nn.Module,
        routers: nn.ModuleDict,
        experts: nn.ModuleDict,
        resamplers: nn.ModuleDict | Mapping[str, nn.Module],
        owns_resamplers: bool = True,
        balance_coef: float = 0.0,
    ) -> None:
        super().__init__()
        if set(routers.keys()) != set(experts.keys()) or not set(routers.keys()) <= set(GROUPS):
            raise ValueError(
                f"GroupedSequenceMoE: router groups {sorted(routers.keys())} and expert groups "
                f"{sorted(experts.keys())} must match and be among {GROUPS}"
            )
        if len({r.top_k for r in routers.values()}) != 1:
            raise ValueError("GroupedSequenceMoE: all group routers must use the same top_k (seq_moe.top_k)")
        for name, group in experts.items():
            if routers[name].num_experts != len(group):
                raise ValueError(
                    f"GroupedSequenceMoE: group {name!r} router has {routers[name].num_experts} outputs "
                    f"but {len(group)} experts"
                )
            for expert in group:
                if isinstance(expert, FeatureExpert) and expert.kind not in resamplers:
                    raise ValueError(f"GroupedSequenceMoE: no resampler for feature expert {expert.kind!r}")
        self.norm = norm
        self.routers = routers
        self.experts = experts
        self.top_k = next(iter(routers.values())).top_k
        self.balance_coef = float(balance_coef)
        if owns_resamplers:
            self.resamplers = resamplers if isinstance(resamplers, nn.ModuleDict) else nn.ModuleDict(resamplers)
        self._shared = (resamplers,)  # plain tuple: not registered, so shared modules appear once in state_dict

    def forward(self, x: Tensor, ctx: RoutingContext, layer_idx: int, block_input: Tensor) -> MixerOutput:
        """Mix each row with its top-k experts.

        Args:
            x: ``(B, L, D)`` block output (residual stream).
            ctx: routing context (group ids, masks, features, cache).
            layer_idx: index of the block, key of ``ctx.routing_cache``.
            block_input: ``(B, L, D)`` residual stream before the block.

        Returns:
            ``hidden`` ``(B, L, D)``, ``aux_loss`` (balance, fp32 scalar), ``routing`` ``{"seq_experts": (B, k)
            long, "seq_weights": (B, k) float}`` (expert indices within each row's group).
        """
        normed = self.norm(x)
        indices, weights, aux = self._route(normed, ctx, layer_idx)  # (B, k), (B, k), ()
        group_ids = ctx.group_ids.to(x.device)
        # copy / zero / feature experts all return x or block_input plus a sparse update, so the mixture is
        # coef_x * x + coef_in * block_input + sum of the feature updates: no per-expert (n, L, D) row copies
        coef_x = weights.new_zeros(x.shape[0])  # (B,) fp32
        coef_in = weights.new_zeros(x.shape[0])
        updates: list[tuple[Tensor, Tensor]] = []
        for gid, name in enumerate(GROUPS):
            in_group = group_ids == gid
            if name not in self.experts:
                if in_group.any():
                    raise ValueError(f"rows of group {name!r} reached a GroupedSequenceMoE without {name!r} experts")
                continue
            for e, expert in enumerate(self.experts[name]):
                chosen = indices == e  # (B, k)
                w = (weights * chosen).sum(dim=1) * in_group  # (B,) this expert's weight per row, 0 elsewhere
                if isinstance(expert, ZeroExpert):
                    coef_in = coef_in + w
                    continue
                if isinstance(expert, CopyExpert | FeatureExpert):  # a feature expert returns x plus an update
                    coef_x = coef_x + w
                if isinstance(expert, CopyExpert):
                    continue
                rows = (in_group & chosen.any(dim=1)).nonzero().squeeze(1)  # (n,)
                if rows.numel() == 0:
                    continue
                if isinstance(expert, FeatureExpert):
                    y = expert.update(
                        x.index_select(0, rows), normed.index_select(0, rows), ctx, rows, self._shared[0][expert.kind]
                    )  # (n, L, D) or None
                else:  # any other injected sequence expert: its full output
                    sub = (x.index_select(0, rows), normed.index_select(0, rows), block_input.index_select(0, rows))
                    y = expert(*sub, ctx, rows)
                if y is not None:
                    updates.append((rows, w.index_select(0, rows).to(y.dtype)[:, None, None] * y))
        out = coef_x.to(x.dtype)[:, None, None] * x + coef_in.to(x.dtype)[:, None, None] * block_input
        for rows, y in updates:
            out = out.index_add(0, rows, y.to(out.dtype))
        routing = {"seq_experts": indices.detach(), "seq_weights": weights.detach()}
        return MixerOutput(out, aux, routing)

    def _route(self, normed: Tensor, ctx: RoutingContext, layer_idx: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per-row expert indices ``(B, k)`` and weights ``(B, k)`` (fp32) plus the balance loss."""
        batch, length, _ = normed.shape
        aux = normed.new_zeros((), dtype=torch.float32)
        if ctx.force_seq_experts is not None:
            indices = self._check_forced(ctx.force_seq_experts.to(normed.device), ctx, batch)
            weights = torch.full(indices.shape, 1.0 / indices.shape[1], device=normed.device)
            ctx.routing_cache[layer_idx] = {"experts": indices, "weights": weights}
            return indices, weights, aux
        pool = ctx.valid if ctx.pool_mask is None else ctx.pool_mask
        if pool.shape != (batch, length):
            raise ValueError(f"ctx.pool_mask has shape {tuple(pool.shape)}; expected (B, L) = {(batch, length)}")
        pool = (pool & ctx.valid).to(normed.device)
        fresh = pool.any(dim=1)  # (B,) rows whose condition is in this forward
        indices, weights = self._cached(ctx, layer_idx, batch, fresh, normed.device)
        if fresh.any():
            pooled = (normed.float() * pool.unsqueeze(-1)).sum(1) / pool.sum(1, keepdim=True).clamp(min=1)  # (B, D)
            group_ids = ctx.group_ids.to(normed.device)
            for gid, name in enumerate(GROUPS):
                rows = (fresh & (group_ids == gid)).nonzero().squeeze(1)
                if rows.numel() == 0 or name not in self.routers:
                    continue
                probs, gates, idx = self.routers[name](pooled.index_select(0, rows))  # (n, E), (n, k), (n, k)
                indices = indices.index_copy(0, rows, idx)
                weights = weights.index_copy(0, rows, gates)
                aux = aux + self._balance(probs, idx)
        ctx.routing_cache[layer_idx] = {"experts": indices.detach(), "weights": weights.detach()}
        return indices, weights, aux

    def _cached(
        self, ctx: RoutingContext, layer_idx: int, batch: int, fresh: Tensor, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """Cached ``(B, k)`` decisions for rows without pool positions (zeros when every row is fresh)."""
        cached = ctx.routing_cache.get(layer_idx)
        if cached is None:
            if not fresh.all():
                raise ValueError(
                    f"layer {layer_idx}: rows without pool positions (ctx.pool_mask) need a cached "
                    "routing decision; run the forward over the condition first with the same ctx"
                )
            zeros = torch.zeros(batch, self.top_k, device=device)
            return zeros.long(), zeros
        if cached["experts"].shape != (batch, self.top_k):
            raise ValueError(
                f"layer {layer_idx}: ctx.routing_cache holds {tuple(cached['experts'].shape)} decisions "
                f"but this forward has {batch} rows and top_k={self.top_k}; use a new RoutingContext"
            )
        return cached["experts"].to(device), cached["weights"].to(device).float()

    def _check_forced(self, forced: Tensor, ctx: RoutingContext, batch: int) -> Tensor:
        if forced.dim() != 2 or forced.shape[0] != batch:
            raise ValueError(f"ctx.force_seq_experts must be (B, k) = ({batch}, k), got {tuple(forced.shape)}")
        forced = forced.long()
        group_ids = ctx.group_ids.to(forced.device)
        for gid, name in enumerate(GROUPS):
            rows = group_ids == gid
            if name in self.experts and rows.any() and (forced[rows] >= len(self.experts[name])).any():
                raise ValueError(f"ctx.force_seq_experts has an index >= {len(self.experts[name])} for group {name!r}")
        if (forced < 0).any():
            raise ValueError("ctx.force_seq_experts must hold non-negative expert indices")
        return forced

    def _balance(self, probs: Tensor, idx: Tensor) -> Tensor:
        """``lambda sum_e f_e P_e`` over one group's routed rows, ``f_e = E / (k n) count_e``."""
        if self.balance_coef == 0.0:
            return probs.new_zeros(())
        n, num_experts = probs.shape
        counts = torch.bincount(idx.reshape(-1), minlength=num_experts).float()  # (E,)
        f = counts * num_experts / (self.top_k * n)
        return self.balance_coef * (f * probs.mean(dim=0)).sum()
