"""Grouped token-level mixture of experts (UniF²ace spec §3.2, DeepSeekMoE form).

Per task group ``g`` (``und`` / ``gen``, chosen per row by ``RoutingContext.group_ids``) a token ``u_t`` goes
through ``K_s`` always-on shared experts and the top-``K`` of ``N`` routed experts::

    s_{i,t} = softmax_i(u_t^T e_i^g)                       router: Linear(d, N, bias=False), fp32
    g_{i,t} = s_{i,t} if i in TopK(s_t, K) else 0          (optionally renormalised over the top-K)
    y_t     = sum_k FFN^{g,shared}_k(u_t) + sum_i g_{i,t} FFN^g_i(u_t),   FFN(u) = W2 gelu_new(W1 u + b1) + b2

and the per-group balance loss (Switch / DeepSeekMoE expert-level term, one lambda per group)::

    f_i = N / (K T_g) * #{t in g : i in TopK(t)}     P_i = 1/T_g * sum_{t in g} s_{i,t}     L_g = lambda_g sum_i f_i P_i

``T_g`` counts the non-pad tokens of group ``g`` (``ctx.valid``); pads are routed (their output is unused) but
never enter ``f`` or ``P``. Uniform routing gives ``L_g = lambda_g`` exactly.

Experts, routers and shared experts are injected (``nn.ModuleDict`` keyed by group name), so the same class
serves every width / count. :meth:`GroupedTokenMoE.from_dense` upcycles a dense Phi MLP such that the block
computes exactly the dense MLP at step 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unif2ace.config.model import GROUPS, TokenMoEConfig
from unif2ace.model.interfaces import MixerOutput, RoutingContext
from unif2ace.model.layers import gelu_new


class Expert(nn.Module):
    """One feed-forward expert, the Phi MLP form ``fc2(gelu_new(fc1(x)))`` (same activation as ``DenseMLP``).

    Args:
        dim: model width ``D``.
        intermediate: hidden width ``H``.
    """

    def __init__(self, dim: int, intermediate: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, intermediate)
        self.fc2 = nn.Linear(intermediate, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(..., D)`` to ``(..., D)``."""
        return self.fc2(gelu_new(self.fc1(x)))


class TopKRouter(nn.Module):
    """Softmax top-k router, computed in fp32 with autocast disabled (an fp32 island, STYLE habit 6).

    Args:
        dim: input width ``D``.
        num_experts: ``N``.
        top_k: ``K`` experts kept per input.
        renormalize: rescale the kept probabilities to sum to 1.
        init_std: std of the normal init of the routing matrix.
    """

    def __init__(self, dim: int, num_experts: int, top_k: int, renormalize: bool = False, init_std: float = 0.02):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"router top_k={top_k} must be between 1 and num_experts={num_experts}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.renormalize = renormalize
        self.weight = nn.Parameter(torch.randn(num_experts, dim) * init_std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Route inputs.

        Args:
            x: ``(T, D)`` inputs (any float dtype).

        Returns:
            ``probs`` ``(T, N)`` fp32 softmax, ``gates`` ``(T, K)`` fp32 kept weights, ``indices`` ``(T, K)`` long.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = F.linear(x.float(), self.weight.float())  # (T, N)
            probs = logits.softmax(dim=-1)
            gates, indices = probs.topk(self.top_k, dim=-1)  # (T, K)
            if self.renormalize:
                gates = gates / gates.sum(dim=-1, keepdim=True)
        return probs, gates, indices


def dispatch_experts(x: Tensor, gates: Tensor, indices: Tensor, experts: nn.ModuleList) -> Tensor:
    """Weighted sum of the selected experts' outputs, grouped by expert (no loop over tokens).

    The ``T*K`` (token, slot) assignments are sorted by expert id, each expert runs once on its contiguous
    chunk, and results are scattered back with ``index_add_``.

    Args:
        x: ``(T, D)`` tokens.
        gates: ``(T, K)`` fp32 gate values.
        indices: ``(T, K)`` long expert ids.
        experts: the ``N`` routed experts.

    Returns:
        ``(T, D)`` ``sum_k gates[t, k] * experts[indices[t, k]](x[t])``.
    """
    num_tokens, k = indices.shape
    flat_ids = indices.reshape(-1)  # (T*K,)
    order = flat_ids.argsort(stable=True)
    token_of = order // k  # (T*K,) token index of each sorted assignment
    counts = torch.bincount(flat_ids, minlength=len(experts)).tolist()
    chunks = x.index_select(0, token_of).split(counts)  # per expert: (count_e, D)
    outputs = [experts[e](chunk) for e, chunk in enumerate(chunks) if counts[e] > 0]
    routed = torch.cat(outputs, dim=0)  # (T*K, D), in sorted order
    routed = routed * gates.reshape(-1)[order].unsqueeze(-1).to(routed.dtype)
    out = routed.new_zeros(num_tokens, routed.shape[-1])
    return out.index_add(0, token_of, routed)


class GroupedTokenMoE(nn.Module):
    """Task-grouped token-level MoE: per group shared experts + top-k routed experts (spec §3.2).

    Args:
        routers: group name -> :class:`TopKRouter` over that group's routed experts.
        shared_experts: group name -> ``nn.ModuleList`` of always-on experts (may be empty).
        experts: group name -> ``nn.ModuleList`` of routed experts.
        balance_coefs: group name -> lambda of that group's balance loss.

    Raises:
        ValueError: the dicts do not cover the same groups, a group name is not in ``GROUPS``, or a router's
            expert count differs from its expert list.
    """

    def __init__(
        self,
        *,
        routers: nn.ModuleDict,
        shared_experts: nn.ModuleDict,
        experts: nn.ModuleDict,
        balance_coefs: Mapping[str, float],
    ) -> None:
        super().__init__()
        names = set(routers.keys())
        for label, keys in (
            ("shared_experts", shared_experts.keys()),
            ("experts", experts.keys()),
            ("balance_coefs", balance_coefs.keys()),
        ):
            if set(keys) != names:
                raise ValueError(
                    f"GroupedTokenMoE: {label} groups {sorted(keys)} differ from router groups {sorted(names)}"
                )
        unknown = names - set(GROUPS)
        if unknown:
            raise ValueError(f"GroupedTokenMoE: unknown group(s) {sorted(unknown)}; groups are {GROUPS}")
        for name in names:
            if routers[name].num_experts != len(experts[name]):
                raise ValueError(
                    f"GroupedTokenMoE: group {name!r} router has {routers[name].num_experts} outputs "
                    f"but {len(experts[name])} routed experts"
                )
        self.routers = routers
        self.shared_experts = shared_experts
        self.experts = experts
        self.balance_coefs = {name: float(balance_coefs[name]) for name in names}

    def forward(self, x: Tensor, ctx: RoutingContext | None) -> MixerOutput:
        """Apply the MoE of each row's group.

        Args:
            x: ``(B, L, D)`` normed hidden states.
            ctx: routing context; ``group_ids`` ``(B,)`` and ``valid`` ``(B, L)`` are used.

        Returns:
            ``hidden`` ``(B, L, D)``, ``aux_loss`` = sum of the groups' balance losses (fp32 scalar), ``routing``
            ``{"token_counts": (G, N_max) long}``: non-pad tokens per (group, routed expert), rows in ``GROUPS``
            order.

        Raises:
            ValueError: ``ctx`` is missing or a row's group has no experts in this module.
        """
        if ctx is None:
            raise ValueError("GroupedTokenMoE needs a RoutingContext (group_ids, valid); pass ctx to the model")
        batch, length, dim = x.shape
        if ctx.valid.shape != (batch, length) or ctx.group_ids.shape != (batch,):
            raise ValueError(
                f"RoutingContext shapes valid={tuple(ctx.valid.shape)}, group_ids={tuple(ctx.group_ids.shape)} "
                f"do not match hidden states (B, L) = {(batch, length)}"
            )
        flat = x.reshape(batch * length, dim)  # (B*L, D)
        token_group = ctx.group_ids.to(x.device).repeat_interleave(length)  # (B*L,)
        valid = ctx.valid.to(x.device).reshape(-1)  # (B*L,)
        n_max = max(len(e) for e in self.experts.values())
        counts = torch.zeros(len(GROUPS), n_max, dtype=torch.long, device=x.device)
        aux = x.new_zeros((), dtype=torch.float32)
        pieces: list[tuple[Tensor, Tensor]] = []
        for gid, name in enumerate(GROUPS):
            idx = (token_group == gid).nonzero().squeeze(1)  # (T,)
            if idx.numel() == 0:
                continue
            if name not in self.routers:
                raise ValueError(f"rows of group {name!r} reached a GroupedTokenMoE without {name!r} experts")
            y, loss, group_counts = self._group_forward(name, flat.index_select(0, idx), valid.index_select(0, idx))
            pieces.append((idx, y))
            aux = aux + loss
            counts[gid, : group_counts.numel()] = group_counts
        out_dtype = pieces[0][1].dtype if pieces else x.dtype
        out = x.new_zeros(batch * length, dim, dtype=out_dtype)
        for idx, y in pieces:
            out = out.index_copy(0, idx, y)
        return MixerOutput(out.reshape(batch, length, dim), aux, {"token_counts": counts})

    def _group_forward(self, name: str, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MoE of one group on its ``(T, D)`` tokens; returns output, balance loss and ``(N,)`` valid counts."""
        router = self.routers[name]
        probs, gates, indices = router(x)  # (T, N), (T, K), (T, K)
        y = dispatch_experts(x, gates, indices, self.experts[name])
        for shared in self.shared_experts[name]:
            y = y + shared(x)
        num_experts = router.num_experts
        selected = indices[valid]  # (T_g, K)
        counts = torch.bincount(selected.reshape(-1), minlength=num_experts)  # (N,)
        n_valid = selected.shape[0]
        if n_valid == 0:
            return y, probs.new_zeros(()), counts
        f = counts.float() * num_experts / (router.top_k * n_valid)  # (N,)
        p = probs[valid].mean(dim=0)  # (N,)
        loss = self.balance_coefs[name] * (f * p).sum()
        return y, loss, counts

    @classmethod
    def from_dense(cls, mlp: nn.Module, cfg: TokenMoEConfig, router_init_std: float = 0.02) -> GroupedTokenMoE:
        """Upcycle a dense MLP (``fc1`` / ``fc2`` Linear layers) so the MoE computes exactly the MLP at step 0.

        An MLP is a sum over its hidden units, ``W2 gelu(W1 u + b1) + b2 = sum_j W2[:, j] gelu(W1[j] u + b1[j]) + b2``,
        so the dense hidden units are split in order across the group's shared experts (``b2`` goes to the first,
        the others get a zero output bias). Shared hidden units beyond the dense width get a zero ``fc2`` column
        (padding). Routed experts take ``fc1`` rows from consecutive slices of the dense MLP (cycling; [INF]
        fine-grained upcycling) and a zero ``fc2`` weight and bias, so their output is 0 at step 0 while ``fc2``
        still receives gradient. Routers are random normal with std ``router_init_std``. Both groups start equal.

        Args:
            mlp: dense MLP with ``fc1: Linear(D, H)`` and ``fc2: Linear(H, D)``.
            cfg: token-MoE sizes.
            router_init_std: router init scale.

        Raises:
            ValueError: the shared experts cannot hold the dense MLP (``num_shared * shared_intermediate < H``).
        """
        dim, hidden = mlp.fc1.in_features, mlp.fc1.out_features
        if cfg.num_shared * cfg.shared_intermediate < hidden:
            raise ValueError(
                f"cannot upcycle a dense MLP of width {hidden}: token_moe.num_shared * token_moe.shared_intermediate = "
                f"{cfg.num_shared * cfg.shared_intermediate}; set them so that the product is >= {hidden}"
            )
        moe = build_grouped_token_moe(dim, cfg, router_init_std=router_init_std)
        moe.to(device=mlp.fc1.weight.device, dtype=mlp.fc1.weight.dtype)
        with torch.no_grad():
            for name in moe.routers:
                _load_shared_slices(moe.shared_experts[name], mlp)
                for e, expert in enumerate(moe.experts[name]):
                    rows = (torch.arange(expert.fc1.out_features) + e * expert.fc1.out_features) % hidden
                    expert.fc1.weight.copy_(mlp.fc1.weight[rows])
                    expert.fc1.bias.copy_(mlp.fc1.bias[rows])
                    expert.fc2.weight.zero_()
                    expert.fc2.bias.zero_()
        return moe


def _load_shared_slices(shared: nn.ModuleList, mlp: nn.Module) -> None:
    """Copy consecutive hidden-unit slices of ``mlp`` into the shared experts; pad with zero ``fc2`` columns."""
    hidden = mlp.fc1.out_features
    start = 0
    for k, expert in enumerate(shared):
        width = expert.fc1.out_features
        take = max(0, min(width, hidden - start))
        expert.fc2.weight.zero_()
        expert.fc1.weight[:take].copy_(mlp.fc1.weight[start : start + take])
        expert.fc1.bias[:take].copy_(mlp.fc1.bias[start : start + take])
        expert.fc2.weight[:, :take].copy_(mlp.fc2.weight[:, start : start + take])
        if k == 0:
            expert.fc2.bias.copy_(mlp.fc2.bias)
        else:
            expert.fc2.bias.zero_()
        start += take


def build_grouped_token_moe(dim: int, cfg: TokenMoEConfig, router_init_std: float = 0.02) -> GroupedTokenMoE:
    """Build a freshly initialised :class:`GroupedTokenMoE` with one set of experts per group in ``GROUPS``.

    Args:
        dim: model width ``D``.
        cfg: sizes, top-k and balance lambdas.
        router_init_std: router init scale.
    """
    coefs = {"und": cfg.balance_coef_und, "gen": cfg.balance_coef_gen}
    return GroupedTokenMoE(
        routers=nn.ModuleDict(
            {g: TopKRouter(dim, cfg.num_routed, cfg.top_k, cfg.renormalize, router_init_std) for g in GROUPS}
        ),
        shared_experts=nn.ModuleDict(
            {g: nn.ModuleList(Expert(dim, cfg.shared_intermediate) for _ in range(cfg.num_shared)) for g in GROUPS}
        ),
        experts=nn.ModuleDict(
            {g: nn.ModuleList(Expert(dim, cfg.routed_intermediate) for _ in range(cfg.num_routed)) for g in GROUPS}
        ),
        balance_coefs={g: coefs[g] for g in GROUPS},
    )
