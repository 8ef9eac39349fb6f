"""A one-minute end-to-end self-test: train a tiny UniF²ace on a toy batch, then generate and caption.

What it exercises: the MoE transformer (token + sequence MoE), omni-attention masks, Show-o corruption, the
D3Diff and text losses, balance losses, AdamW, the KV-cached MaskGIT sampler with CFG and KV-cached text
decoding. The toy task is memorisation: two "prompts" each paired with a fixed random 4x4 code grid, and two code
grids each paired with a fixed "caption". After training, generation from each prompt should reproduce its grid
and captioning each grid should reproduce its caption — so the report's accuracies show the whole path works.
This is **not** a face model (that is the shipped model); it is a check that runs anywhere in seconds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from unif2ace.config.model import GEN, UND, ModelConfig, ResamplerConfig, SeqMoEConfig, TokenMoEConfig, VocabConfig
from unif2ace.losses.corruption import mask_tokens
from unif2ace.losses.d3diff import D3DiffLoss
from unif2ace.losses.schedules import CosineSchedule
from unif2ace.losses.text import next_token_ce
from unif2ace.model import RoutingContext, build_model
from unif2ace.model.masks import mmu_attention_mask, omni_attention_mask
from unif2ace.sampling.engine import Engine

N_IMG, TEXT = 16, 8  # 4x4 image tokens, text block length


@dataclass
class SelfTestReport:
    """Numbers printed by ``unif2ace selftest``."""

    parameters: int
    steps: int
    loss_first: float
    loss_last: float
    t2i_token_accuracy: float
    caption_token_accuracy: float
    train_seconds: float
    generate_seconds: float

    def to_dict(self) -> dict:
        """Plain dict for JSON output."""
        return asdict(self)


def toy_config() -> ModelConfig:
    """The self-test's model: d=96, 2 layers, token MoE (4 routed, top-2) + sequence MoE, 0.46 M parameters."""
    return ModelConfig(
        vocab=VocabConfig(llm_vocab_size=64, codebook_size=64, bos_id=0, eos_id=0),
        hidden_size=96,
        num_layers=2,
        num_heads=4,
        intermediate_size=256,
        token_moe=TokenMoEConfig(enabled=True, num_routed=4, top_k=2, routed_intermediate=64, shared_intermediate=128),
        seq_moe=SeqMoEConfig(
            enabled=True,
            feature_dims={"clip": 16, "face": 16},
            resampler=ResamplerConfig(dim=32, depth=1, heads=2, dim_head=16, num_queries=N_IMG),
        ),
    )


def _t2i_prefix(v: VocabConfig, text: list[int]) -> list[int]:
    block = [v.special_id("<|t2i|>"), v.bos_id, *text, v.eos_id]
    return [v.pad_id] * (TEXT + 1 - len(block)) + block


def run_selftest(steps: int = 150, seed: int = 0) -> SelfTestReport:
    """Train the toy model for ``steps`` steps and measure generation / captioning accuracy.

    Args:
        steps: optimisation steps (150 reach ~100 % on 2 CPU cores in well under a minute).
        seed: seed of weights, data and sampling.

    Returns:
        A :class:`SelfTestReport`.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = toy_config()
    v = cfg.vocab
    model = build_model(cfg)
    soi, eoi, mmu = v.special_id("<|soi|>"), v.special_id("<|eoi|>"), v.special_id("<|mmu|>")
    codes = torch.randint(0, v.codebook_size, (2, N_IMG), generator=g)  # one grid per prompt / caption
    prompts = [torch.randint(1, v.llm_vocab_size, (4,), generator=g).tolist() for _ in range(2)]
    captions = [torch.randint(1, v.llm_vocab_size, (6,), generator=g).tolist() for _ in range(2)]
    feats = {"clip": torch.randn(2, 1, 16, generator=g), "face": torch.randn(2, 1, 16, generator=g)}
    prefixes = torch.tensor([_t2i_prefix(v, p) for p in prompts])
    heads = [[mmu, soi, *(c + v.image_offset).tolist(), eoi, v.bos_id] for c in codes]
    ids_mmu = torch.tensor([h + c + [v.eos_id] for h, c in zip(heads, captions, strict=True)])
    labels_mmu = torch.tensor([[-100] * len(h) + c + [v.eos_id] for h, c in zip(heads, captions, strict=True)])
    img_mmu = torch.zeros_like(ids_mmu, dtype=torch.bool)
    img_mmu[:, 2 : 2 + N_IMG] = True
    d3diff, schedule = D3DiffLoss(alpha=0.01), CosineSchedule()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    image_pos = torch.arange(TEXT + 2, TEXT + 2 + N_IMG).expand(2, N_IMG)
    codebook = (v.image_offset, v.image_offset + v.codebook_size)
    losses = []
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        masked = mask_tokens(codes + v.image_offset, v.mask_id, schedule, generator=g)
        ids_t2i = torch.cat([prefixes, torch.full((2, 1), soi), masked.input_ids, torch.full((2, 1), eoi)], 1)
        valid = ids_t2i != v.pad_id
        ctx_g = RoutingContext(
            group_ids=torch.full((2,), GEN),
            valid=valid,
            image_mask=torch.zeros_like(valid).index_fill_(1, torch.arange(TEXT + 2, TEXT + 2 + N_IMG), True),
            pool_mask=valid & (torch.arange(ids_t2i.shape[1]) <= TEXT),
            generator=g,
        )
        out_g = model(
            ids_t2i,
            attention_mask=omni_attention_mask(ids_t2i, v.pad_id, soi, eoi),
            ctx=ctx_g,
            logits_positions=image_pos,
            vocab_range=codebook,
        )
        gen = d3diff(out_g.logits, codes, masked.mask, masked.mask_prob)
        ctx_u = RoutingContext(
            group_ids=torch.full((2,), UND),
            valid=ids_mmu != v.pad_id,
            image_mask=img_mmu,
            pool_mask=torch.arange(ids_mmu.shape[1]).expand_as(ids_mmu) <= N_IMG + 2,
            features=feats,
        )
        out_u = model(ids_mmu, attention_mask=mmu_attention_mask(ids_mmu, eoi, per_row=True), ctx=ctx_u)
        loss = gen.loss + next_token_ce(out_u.logits, labels_mmu) + out_g.aux_loss + out_u.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - start
    model.eval()
    engine = Engine(model, v)
    start = time.perf_counter()
    uncond = torch.tensor([_t2i_prefix(v, [])] * 2)
    sampled = engine.generate_image_tokens(
        prefixes,
        N_IMG,
        uncond_prefix_ids=uncond,
        steps=8,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(seed),
    )
    answers = engine.generate_text(ids_mmu[:, : len(heads[0])], max_new_tokens=8, features=feats)
    gen_s = time.perf_counter() - start
    want = torch.tensor([c + [v.eos_id] for c in captions])
    got = answers.ids[:, : want.shape[1]]
    return SelfTestReport(
        parameters=model.num_parameters(),
        steps=steps,
        loss_first=losses[0],
        loss_last=losses[-1],
        t2i_token_accuracy=float((sampled == codes).float().mean()),
        caption_token_accuracy=float((got == want).float().mean()) if got.shape == want.shape else 0.0,
        train_seconds=round(train_s, 2),
        generate_seconds=round(gen_s, 2),
    )
