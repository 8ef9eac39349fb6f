"""The unified UniF²ace transformer (spec §2.1, §3.1).

A Show-o/Phi decoder over one id space (text, specials, image codes, mask). Each block is::

    parallel (Show-o):   h = LN(x);  y = x + Attn(h) + FFN(h)
    sequential (figure): y1 = x + Attn(LN_a(x));  y = y1 + FFN(LN_t(y1))
    then, if present:    y = SeqMixer(y, ctx, i, block_input=x)

``FFN`` is an injected :class:`~unif2ace.model.interfaces.FeedForward` (dense MLP or grouped token MoE) and
``SeqMixer`` an injected :class:`~unif2ace.model.interfaces.SequenceMixer` (grouped sequence MoE).

Only what is used is computed: ``logits_positions`` gathers hidden states before the head and ``vocab_range``
evaluates only a slice of ``lm_head`` (e.g. the image codebook for T2I). A :class:`KVCache` lets a text prefix
be computed once and re-used for every MaskGIT step (text rows are causal and never see image tokens), and lets
text decoding feed one token per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unif2ace.config.model import ModelConfig
from unif2ace.model.attention import Attention
from unif2ace.model.interfaces import FeedForward, RoutingContext, SequenceMixer
from unif2ace.model.kv_cache import KVCache


@dataclass
class TransformerOutput:
    """Result of :meth:`Unif2aceTransformer.forward`.

    Attributes:
        logits: ``(B, L, V')`` logits, ``(B, K, V')`` for index ``logits_positions``, ``(M, V')`` for a bool
            mask, or None when ``return_logits=False``; V' = ``vocab_range`` width or the full vocabulary.
        aux_loss: scalar sum of the injected modules' auxiliary (balance) losses.
        routing: per layer ``{"token": {...}, "seq": {...}}`` routing records of the injected modules.
        past_key_values: the cache when ``use_cache`` (else the cache that was passed, unchanged).
        hidden: final-normed hidden states ``(B, L, D)`` when ``return_hidden``.
    """

    logits: Tensor | None
    aux_loss: Tensor
    routing: list[dict[str, dict[str, Tensor]]] = field(default_factory=list)
    past_key_values: KVCache | None = None
    hidden: Tensor | None = None


class Block(nn.Module):
    """One transformer block with injected feed-forward and optional sequence mixer."""

    def __init__(self, config: ModelConfig, layer_idx: int, mlp: FeedForward, seq_mixer: SequenceMixer | None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.parallel = config.block_form == "parallel"
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if not self.parallel:
            self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.mlp = mlp
        self.seq_mixer = seq_mixer
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        cos_sin: tuple[Tensor, Tensor],
        attention_mask: Tensor | None,
        ctx: RoutingContext | None,
        cache: KVCache | None,
        use_cache: bool,
    ) -> tuple[Tensor, Tensor, dict[str, dict[str, Tensor]]]:
        """``x`` ``(B, L, D)`` -> (new residual stream, aux loss, routing record)."""
        h = self.input_layernorm(x)
        attn = self.resid_dropout(self.self_attn(h, cos_sin, attention_mask, cache, use_cache))
        if self.parallel:
            ff = self.mlp(h, ctx)
            y = x + attn + self.resid_dropout(ff.hidden)
        else:
            y1 = x + attn
            ff = self.mlp(self.post_attention_layernorm(y1), ctx)
            y = y1 + self.resid_dropout(ff.hidden)
        aux, routing = ff.aux_loss, {"token": ff.routing}
        if self.seq_mixer is not None:
            if ctx is None:
                raise ValueError("a model with sequence-level MoE needs a RoutingContext (ctx) in forward()")
            mixed = self.seq_mixer(y, ctx, self.layer_idx, block_input=x)
            y, aux, routing["seq"] = mixed.hidden, aux + mixed.aux_loss, mixed.routing
        return y, aux, routing


class Unif2aceTransformer(nn.Module):
    """Embeddings, blocks, final LayerNorm and ``lm_head`` (with bias) over the unified vocabulary.

    Args:
        config: model config.
        feed_forwards: one :class:`FeedForward` per layer (dense MLP or grouped token MoE).
        seq_mixers: one :class:`SequenceMixer` per layer, or None.
    """

    def __init__(
        self, config: ModelConfig, feed_forwards: list[FeedForward], seq_mixers: list[SequenceMixer] | None = None
    ) -> None:
        super().__init__()
        if len(feed_forwards) != config.num_layers:
            raise ValueError(f"got {len(feed_forwards)} feed-forward modules for model.num_layers={config.num_layers}")
        if seq_mixers is not None and len(seq_mixers) != config.num_layers:
            raise ValueError(f"got {len(seq_mixers)} sequence mixers for model.num_layers={config.num_layers}")
        self.config = config
        vocab = config.vocab.vocab_size
        self.embed_tokens = nn.Embedding(vocab, config.hidden_size)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config, i, feed_forwards[i], None if seq_mixers is None else seq_mixers[i])
            for i in range(config.num_layers)
        )
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, vocab)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        ctx: RoutingContext | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        logits_positions: Tensor | None = None,
        vocab_range: tuple[int, int] | None = None,
        return_hidden: bool = False,
        return_logits: bool = True,
    ) -> TransformerOutput:
        """Run the model.

        Args:
            input_ids: ``(B, L)`` unified ids.
            attention_mask: ``(B, 1, L, T + L)`` bool (True = attend) or additive float mask over the T cached
                and L new positions; None = full attention.
            position_ids: ``(B, L)`` RoPE positions; default ``T + arange(L)`` (Show-o: left padding does not
                shift positions).
            ctx: routing side information, required by MoE layers.
            past_key_values: cache of earlier positions; read-only unless ``use_cache``.
            use_cache: append this forward's keys/values to the cache (a new one if None) and return it.
            logits_positions: ``(B, K)`` long indices or ``(B, L)`` bool mask of positions that need logits.
            vocab_range: ``(start, end)`` slice of the vocabulary to score.
            return_hidden: also return the final-normed hidden states.
            return_logits: compute logits at all (False for cache-filling forwards).

        Returns:
            :class:`TransformerOutput`.
        """
        b, n = input_ids.shape
        past = 0 if past_key_values is None else len(past_key_values)
        if use_cache and past_key_values is None:
            past_key_values = KVCache(self.config.num_layers)
        if position_ids is None:
            position_ids = torch.arange(past, past + n, device=input_ids.device).expand(b, n)
        if past + n > self.config.max_position_embeddings:
            limit = self.config.max_position_embeddings
            raise ValueError(f"sequence of {past + n} tokens exceeds model.max_position_embeddings={limit}")
        x = self.embed_dropout(self.embed_tokens(input_ids))  # (B, L, D)
        cos_sin = self.blocks[0].self_attn.rotary.cos_sin(position_ids)
        aux = x.new_zeros((), dtype=torch.float32)
        routing = []
        ckpt = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            args = (x, cos_sin, attention_mask, ctx, past_key_values, use_cache)
            x, block_aux, record = checkpoint(block, *args, use_reentrant=False) if ckpt else block(*args)
            aux = aux + block_aux.float()
            routing.append(record)
        hidden = self.final_layernorm(x)
        logits = self.head(hidden, logits_positions, vocab_range) if return_logits else None
        return TransformerOutput(
            logits=logits,
            aux_loss=aux,
            routing=routing,
            past_key_values=past_key_values,
            hidden=hidden if return_hidden else None,
        )

    def head(
        self, hidden: Tensor, positions: Tensor | None = None, vocab_range: tuple[int, int] | None = None
    ) -> Tensor:
        """Logits of ``hidden`` ``(B, L, D)`` at ``positions`` for the ``vocab_range`` slice of ``lm_head``."""
        if positions is not None:
            if positions.dtype == torch.bool:
                hidden = hidden[positions]  # (M, D)
            else:
                hidden = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))  # (B, K, D)
        weight, bias = self.lm_head.weight, self.lm_head.bias
        if vocab_range is not None:
            start, end = vocab_range
            if not 0 <= start < end <= weight.shape[0]:
                raise ValueError(f"vocab_range {vocab_range} is outside [0, {weight.shape[0]}]")
            weight, bias = weight[start:end], bias[start:end]
        return nn.functional.linear(hidden, weight, bias)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count (each shared tensor counted once)."""
        seen = {}
        for p in self.parameters():
            if not trainable_only or p.requires_grad:
                seen[id(p)] = p.numel()
        return sum(seen.values())
