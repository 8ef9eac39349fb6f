"""Builders that turn a :class:`~unif2ace.config.model.ModelConfig` into the injected MoE modules.

The transformer builder calls :func:`build_feed_forward` per layer when ``config.token_moe.enabled`` (a disabled
token MoE is the dense MLP, built by the transformer side) and :func:`build_sequence_mixers` once when
``config.seq_moe.enabled``. :func:`upcycle_feed_forward` converts a dense MLP loaded from Show-o weights into a
grouped token MoE that computes the same function at step 0 (spec §3.2 "init", §10 test anchor).
"""

from __future__ import annotations

from torch import nn

from unif2ace.config.base import check
from unif2ace.config.model import GROUPS, ModelConfig
from unif2ace.model.moe import GroupedTokenMoE, TopKRouter, build_grouped_token_moe
from unif2ace.model.resampler import Resampler
from unif2ace.model.seq_moe import FEATURE_KINDS, GroupedSequenceMoE, make_seq_expert


def _check_layer(config: ModelConfig, layer_idx: int) -> None:
    if not 0 <= layer_idx < config.num_layers:
        raise ValueError(f"layer_idx {layer_idx} is outside [0, model.num_layers={config.num_layers})")


def build_feed_forward(config: ModelConfig, layer_idx: int) -> GroupedTokenMoE:
    """Freshly initialised grouped token MoE for block ``layer_idx`` (all layers currently share one layout).

    Args:
        config: model config; ``hidden_size`` and ``token_moe`` are used.
        layer_idx: block index in ``[0, num_layers)``.
    """
    _check_layer(config, layer_idx)
    return build_grouped_token_moe(config.hidden_size, config.token_moe)


def upcycle_feed_forward(dense_mlp: nn.Module, config: ModelConfig, layer_idx: int) -> GroupedTokenMoE:
    """Grouped token MoE initialised from a dense MLP so that it computes exactly ``dense_mlp`` at step 0.

    See :meth:`GroupedTokenMoE.from_dense` for the construction and its width requirement.

    Args:
        dense_mlp: module with ``fc1: Linear(D, H)`` and ``fc2: Linear(H, D)`` (Phi MLP form).
        config: model config; ``token_moe`` sizes are used.
        layer_idx: block index in ``[0, num_layers)``.

    Raises:
        ValueError: width mismatch with ``config.hidden_size`` or shared experts narrower than the MLP.
    """
    _check_layer(config, layer_idx)
    if dense_mlp.fc1.in_features != config.hidden_size:
        raise ValueError(
            f"dense MLP of layer {layer_idx} has input width {dense_mlp.fc1.in_features} but "
            f"model.hidden_size={config.hidden_size}"
        )
    return GroupedTokenMoE.from_dense(dense_mlp, config.token_moe)


def build_resamplers(config: ModelConfig) -> nn.ModuleDict:
    """One Perceiver resampler per feature kind used by any sequence expert (``clip``, ``face``, ``noise``).

    Input widths come from ``seq_moe.feature_dims`` (``noise``: ``seq_moe.noise_dim``); outputs are
    ``hidden_size`` wide with ``seq_moe.resampler.num_queries`` tokens.

    Raises:
        ConfigError: a used feature width is not a positive int (names the field).
    """
    seq = config.seq_moe
    used = [k for k in FEATURE_KINDS if k in seq.und_experts or k in seq.gen_experts]
    dims = {k: (seq.noise_dim if k == "noise" else seq.feature_dims[k]) for k in used}
    for kind, width in dims.items():
        field = "seq_moe.noise_dim" if kind == "noise" else f"seq_moe.feature_dims.{kind}"
        check(isinstance(width, int) and width > 0, field, f"width of the {kind!r} features must be a positive int")
    return nn.ModuleDict({k: Resampler(dims[k], config.hidden_size, seq.resampler) for k in used})


def build_sequence_mixers(config: ModelConfig) -> list[GroupedSequenceMoE]:
    """One grouped sequence MoE per layer; resamplers are shared (registered once, by layer 0's mixer).

    Each layer gets its own ``LN_s``, per-group routers (fp32, top-``seq_moe.top_k``, renormalised) and experts
    (own gates for feature experts).

    Args:
        config: model config; ``hidden_size``, ``layer_norm_eps``, ``num_layers`` and ``seq_moe`` are used.

    Returns:
        ``num_layers`` mixers.
    """
    seq = config.seq_moe
    dim = config.hidden_size
    kinds = {"und": seq.und_experts, "gen": seq.gen_experts}
    resamplers = build_resamplers(config)
    mixers = []
    for layer in range(config.num_layers):
        routers = nn.ModuleDict({g: TopKRouter(dim, len(kinds[g]), seq.top_k, renormalize=True) for g in GROUPS})
        experts = nn.ModuleDict(
            {g: nn.ModuleList(make_seq_expert(k, dim, seq.placement, seq.noise_dim) for k in kinds[g]) for g in GROUPS}
        )
        mixers.append(
            GroupedSequenceMoE(
                norm=nn.LayerNorm(dim, eps=config.layer_norm_eps),
                routers=routers,
                experts=experts,
                resamplers=resamplers,
                owns_resamplers=layer == 0,
                balance_coef=seq.balance_coef,
            )
        )
    return mixers
