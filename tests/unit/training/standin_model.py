"""A compact stand-in for ``unif2ace.model.build_model`` used only while the package transformer is absent.

It follows the model contract the trainer relies on: ``forward(input_ids, attention_mask (B,1,L,L) bool,
position_ids, ctx) -> out`` with ``logits`` ``(B, L, V)``, ``aux_loss`` and per-layer ``routing``; the grouped MoEs
are the package's own (``unif2ace.model.factories``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from unif2ace.config.model import ModelConfig


@dataclass
class StandInOutput:
    logits: torch.Tensor
    aux_loss: torch.Tensor
    routing: list[dict] = field(default_factory=list)


class _MLP(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x, ctx):
        from unif2ace.model.interfaces import MixerOutput
        from unif2ace.model.moe import gelu_new

        return MixerOutput(self.fc2(gelu_new(self.fc1(x))), x.new_zeros(()), {})


class _Block(nn.Module):
    def __init__(self, cfg: ModelConfig, ffn: nn.Module):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.hidden_size)
        self.attn = nn.MultiheadAttention(cfg.hidden_size, cfg.num_heads, batch_first=True)
        self.mlp = ffn

    def forward(self, x, mask, ctx):
        h = self.ln(x)
        a, _ = self.attn(h, h, h, attn_mask=~mask.repeat_interleave(self.attn.num_heads, 0), need_weights=False)
        f = self.mlp(h, ctx)
        return x + a + f.hidden, f.aux_loss, f.routing


class StandInTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from unif2ace.model.factories import build_feed_forward, build_sequence_mixers

        d = cfg.hidden_size
        self.embed = nn.Embedding(cfg.vocab.vocab_size, d)
        self.pos = nn.Embedding(cfg.max_position_embeddings, d)
        ffns = [
            build_feed_forward(cfg, i) if cfg.token_moe.enabled else _MLP(d, cfg.intermediate_size)
            for i in range(cfg.num_layers)
        ]
        self.layers = nn.ModuleList(_Block(cfg, f) for f in ffns)
        self.seq = nn.ModuleList(build_sequence_mixers(cfg)) if cfg.seq_moe.enabled else None
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, cfg.vocab.vocab_size)

    def forward(self, input_ids, attention_mask, position_ids, ctx, **kwargs):
        x = self.embed(input_ids) + self.pos(position_ids)
        mask = attention_mask[:, 0]  # (B, L, L)
        aux = x.new_zeros(())
        routing = []
        for i, block in enumerate(self.layers):
            y, a, r = block(x, mask, ctx)
            aux = aux + a
            r = dict(r)
            if self.seq is not None:
                s = self.seq[i](y, ctx, i, x)
                y, aux = s.hidden, aux + s.aux_loss
                r.update(s.routing)
            routing.append(r)
            x = y
        return StandInOutput(self.lm_head(self.norm(x)), aux, routing)
