"""The engine's shortcuts are exact: prefix KV cache for T2I, KV-cache decoding, left padding for batches."""

from __future__ import annotations

import pytest
import torch

from unif2ace.config.model import GEN, UND, ModelConfig, ResamplerConfig, SeqMoEConfig, TokenMoEConfig, VocabConfig
from unif2ace.model import RoutingContext, build_model
from unif2ace.model.masks import decode_mask, omni_attention_mask
from unif2ace.sampling.engine import Engine

N = 16  # image tokens


def _config(moe: bool) -> ModelConfig:
    return ModelConfig(
        vocab=VocabConfig(llm_vocab_size=64, codebook_size=32, bos_id=0, eos_id=0),
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        token_moe=TokenMoEConfig(enabled=moe, num_routed=4, top_k=2, routed_intermediate=32, shared_intermediate=64),
        seq_moe=SeqMoEConfig(
            enabled=moe,
            gen_experts=["copy", "zero", "copy", "copy"],
            und_experts=["clip", "face", "copy", "zero"],
            feature_dims={"clip": 8, "face": 8},
            resampler=ResamplerConfig(dim=32, depth=1, heads=2, dim_head=16, num_queries=N),
        ),
    )


@pytest.fixture(params=[False, True], ids=["dense", "moe"])
def engine(request):
    torch.manual_seed(3)  # a seed whose greedy continuations vary (checked), so the equalities below have teeth
    cfg = _config(request.param)
    model = build_model(cfg).eval()
    for p in model.parameters():  # make routing non-trivial: zero-init fc2s would hide bugs
        p.data.add_(0.3 * torch.randn_like(p))
    model.lm_head.bias.data.zero_()
    return Engine(model, cfg.vocab)


def _prefixes(v: VocabConfig) -> torch.Tensor:
    t2i = v.special_id("<|t2i|>")
    p = v.pad_id
    return torch.tensor([[p, p, p, t2i, 0, 5, 6, 0], [p, p, t2i, 0, 7, 8, 9, 0]])


def test_prefix_cache_equals_full_forward(engine):
    v = engine.vocab
    prefix = _prefixes(v)
    b = prefix.shape[0]
    codes = torch.randint(0, v.codebook_size + 1, (b, N))  # codebook_size = mask code
    got = engine._image_branch(prefix, N, None, None)(codes)
    ids = torch.where(codes == v.codebook_size, v.mask_id, codes + v.image_offset)
    soi, eoi = v.special_id("<|soi|>"), v.special_id("<|eoi|>")
    full = torch.cat([prefix, torch.full((b, 1), soi), ids, torch.full((b, 1), eoi)], 1)
    mask = omni_attention_mask(full, v.pad_id, soi, eoi)
    image_mask = torch.zeros_like(full, dtype=torch.bool)
    image_mask[:, prefix.shape[1] + 1 : -1] = True
    valid = full != v.pad_id
    pool = valid & ~image_mask & (torch.arange(full.shape[1]) < prefix.shape[1])
    ctx = RoutingContext(group_ids=torch.full((b,), GEN), valid=valid, image_mask=image_mask, pool_mask=pool)
    with torch.no_grad():
        ref = engine.model(full, attention_mask=mask, ctx=ctx).logits
    ref = ref[:, prefix.shape[1] + 1 : -1, v.image_offset : v.image_offset + v.codebook_size]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def _mmu_prompt(v: VocabConfig, codes: list[int], question: list[int]) -> list[int]:
    return [
        v.special_id("<|mmu|>"),
        v.special_id("<|soi|>"),
        *[c + v.image_offset for c in codes],
        v.special_id("<|eoi|>"),
        v.bos_id,
        *question,
    ]


FEATS = {
    "clip": torch.randn(1, 1, 8, generator=torch.Generator().manual_seed(5)),
    "face": torch.randn(1, 1, 8, generator=torch.Generator().manual_seed(6)),
}


def _naive_greedy(engine: Engine, prompt: list[int], steps: int) -> list[int]:
    """Full re-computation every step (no cache), one row, no padding."""
    v = engine.vocab
    ids = torch.tensor([prompt])
    out = []
    eoi_pos = prompt.index(v.special_id("<|eoi|>"))
    for _ in range(steps):
        n = ids.shape[1]
        visible = torch.arange(n)[None] <= eoi_pos
        mask = decode_mask(torch.ones(1, n, dtype=torch.bool), n, visible_prefix=visible)
        image_mask = (torch.arange(n)[None] > 1) & (torch.arange(n)[None] < eoi_pos)
        ctx = RoutingContext(
            group_ids=torch.tensor([UND]),
            valid=torch.ones(1, n, dtype=torch.bool),
            image_mask=image_mask,
            pool_mask=visible,
            features=FEATS,
        )
        with torch.no_grad():
            logits = engine.model(ids, attention_mask=mask, ctx=ctx).logits[0, -1, : v.llm_vocab_size]
        nxt = int(logits.argmax())
        out.append(nxt)
        if nxt == v.eos_id:
            break
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return out


def _strip(row: torch.Tensor, length: int, finished: bool, eos: int) -> list[int]:
    return row[: length + int(finished)].tolist()


def test_kv_cache_decoding_equals_recompute_and_batching(engine):
    v = engine.vocab
    g = torch.Generator().manual_seed(3)
    prompts = [
        _mmu_prompt(v, torch.randint(0, v.codebook_size, (N,), generator=g).tolist(), [11, 12, 13]),
        _mmu_prompt(v, torch.randint(0, v.codebook_size, (N,), generator=g).tolist(), [14, 15, 16, 17, 18, 19]),
    ]
    steps = 8
    width = max(len(p) for p in prompts)
    batch = torch.tensor([[v.pad_id] * (width - len(p)) + p for p in prompts])
    both = {k: f.expand(2, -1, -1) for k, f in FEATS.items()}
    out = engine.generate_text(batch, max_new_tokens=steps, features=both)
    for i, prompt in enumerate(prompts):
        single = engine.generate_text(torch.tensor([prompt]), max_new_tokens=steps, features=FEATS)
        naive = _naive_greedy(engine, prompt, steps)
        got_single = _strip(single.ids[0], int(single.lengths[0]), bool(single.finished[0]), v.eos_id)
        got_batch = _strip(out.ids[i], int(out.lengths[i]), bool(out.finished[i]), v.eos_id)
        assert len(set(naive)) > 2, "degenerate continuation: the test would be weak"
        assert got_single == naive, "KV-cache decoding differs from full recomputation"
        assert got_batch == naive, "batched (left-padded) decoding differs from one-by-one"


def test_generation_seeded_and_cfg_zero(engine):
    v = engine.vocab
    prefix = _prefixes(v)
    uncond = torch.full_like(prefix, v.pad_id)
    uncond[:, -3:] = torch.tensor([v.special_id("<|t2i|>"), 0, 0])
    a = engine.generate_image_tokens(prefix, N, steps=4, generator=torch.Generator().manual_seed(1))
    b = engine.generate_image_tokens(prefix, N, steps=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.shape == (2, N) and int(a.min()) >= 0 and int(a.max()) < v.codebook_size
    g = engine.generate_image_tokens(
        prefix, N, uncond_prefix_ids=uncond, steps=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(1)
    )
    assert g.shape == a.shape
    known = torch.full((2, N), v.codebook_size)
    known[:, :5] = 7
    k = engine.generate_image_tokens(
        prefix, N, steps=4, known_codes=known, generator=torch.Generator().manual_seed(2), sampler="ancestral"
    )
    assert torch.equal(k[:, :5], known[:, :5])


def test_engine_errors(engine):
    prefix = _prefixes(engine.vocab)
    with pytest.raises(ValueError, match="uncond_prefix_ids"):
        engine.generate_image_tokens(prefix, N, guidance_scale=1.0)
    with pytest.raises(ValueError, match="unknown sampler"):
        engine.generate_image_tokens(prefix, N, sampler="nope")
