"""Grouped sequence-level MoE (spec §3.3), Perceiver resampler, factories and the feature cache."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from unif2ace.config.base import ConfigError
from unif2ace.config.model import ModelConfig, ResamplerConfig, SeqMoEConfig
from unif2ace.model.encoders import FeatureCache, stack_features
from unif2ace.model.factories import build_resamplers, build_sequence_mixers
from unif2ace.model.interfaces import RoutingContext, SequenceMixer
from unif2ace.model.resampler import Resampler
from unif2ace.model.seq_moe import GroupedSequenceMoE, make_seq_expert
from unif2ace.utils.io import save_tensors


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many tiny ops: one intra-op thread avoids OpenMP barrier stalls on shared, oversubscribed CI cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


D, Q = 32, 4
UND_KINDS = ["clip", "face", "copy", "copy"]
GEN_KINDS = ["copy", "zero", "noise", "copy"]


def _config(**seq_kw) -> ModelConfig:
    seq = dict(
        enabled=True,
        feature_dims={"clip": 12, "face": 8},
        noise_dim=6,
        resampler=ResamplerConfig(dim=16, depth=2, heads=2, dim_head=8, num_queries=Q),
    )
    seq.update(seq_kw)
    return ModelConfig(hidden_size=D, num_layers=3, num_heads=4, seq_moe=SeqMoEConfig(**seq))


def _mixer(**seq_kw) -> GroupedSequenceMoE:
    return build_sequence_mixers(_config(**seq_kw))[0]


def _ctx(group_ids, length=8, image=(4, 8), **kw) -> RoutingContext:
    batch = len(group_ids)
    image_mask = torch.zeros(batch, length, dtype=torch.bool)
    image_mask[:, image[0] : image[1]] = True
    return RoutingContext(
        group_ids=torch.tensor(group_ids),
        valid=torch.ones(batch, length, dtype=torch.bool),
        image_mask=image_mask,
        **kw,
    )


def _features(batch: int) -> dict[str, torch.Tensor]:
    return {"clip": torch.randn(batch, 5, 12), "face": torch.randn(batch, 1, 8)}


def _expected_feature_expert(mixer, expert_idx, group, x, feats, positions, query_index):
    """w x + (1 - w) S(F)[query] at ``positions``, x elsewhere (written out from the spec)."""
    expert = mixer.experts[group][expert_idx]
    tokens = mixer._shared[0][expert.kind](feats)  # (B, Q, D)
    w = torch.softmax(expert.gate(mixer.norm(x)), dim=-1)[..., :1]
    injected = tokens[:, query_index]  # (B, L, D)
    return torch.where(positions[..., None], w * x + (1 - w) * injected, x)


# --- resampler ---------------------------------------------------------------------------------------------------


def test_resampler_shapes_permutation_invariance_and_width_check():
    res = Resampler(12, D, ResamplerConfig(dim=16, depth=2, heads=2, dim_head=8, num_queries=Q))
    feats = torch.randn(3, 5, 12)
    out = res(feats)
    assert out.shape == (3, Q, D)
    torch.testing.assert_close(res(feats[:, torch.randperm(5)]), out, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(res(feats + 1.0), out)
    with pytest.raises(ValueError, match="width 12"):
        res(torch.randn(3, 5, 7))


def test_perceiver_attention_matches_written_out_attention():
    res = Resampler(12, D, ResamplerConfig(dim=16, depth=1, heads=2, dim_head=8, num_queries=Q))
    attn = res.layers[0][0]
    feats, lat = torch.randn(2, 5, 16), torch.randn(2, Q, 16)
    kv_in = torch.cat([attn.norm_features(feats), attn.norm_latents(lat)], dim=1)
    q = attn.to_q(attn.norm_latents(lat)).view(2, Q, 2, 8)
    k, v = attn.to_kv(kv_in).chunk(2, dim=-1)
    k, v = k.view(2, 5 + Q, 2, 8), v.view(2, 5 + Q, 2, 8)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / 8**0.5
    ref = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(2, Q, 16)
    torch.testing.assert_close(attn(feats, lat), attn.to_out(ref), atol=1e-5, rtol=1e-5)


# --- expert semantics --------------------------------------------------------------------------------------------


def test_copy_returns_x_and_zero_returns_block_input():
    mixer = _mixer()
    x, block_input = torch.randn(2, 8, D), torch.randn(2, 8, D)
    out = mixer(x, _ctx([0, 1], force_seq_experts=torch.tensor([[2, 3], [0, 3]])), 0, block_input)
    assert torch.equal(out.hidden, x)
    out = mixer(x, _ctx([0, 1], force_seq_experts=torch.tensor([[2], [1]])), 0, block_input)
    assert torch.equal(out.hidden[0], x[0]) and torch.equal(out.hidden[1], block_input[1])
    out = mixer(x, _ctx([1, 1], force_seq_experts=torch.tensor([[0, 1], [1, 1]])), 0, block_input)
    torch.testing.assert_close(out.hidden[0], 0.5 * x[0] + 0.5 * block_input[0])
    assert torch.equal(out.hidden[1], block_input[1])
    assert torch.equal(out.routing["seq_weights"], torch.full((2, 2), 0.5))


@pytest.mark.parametrize("image", [(4, 8), (0, 8)])  # 4 image tokens = Q (identity), 8 = 2 Q (each query twice)
def test_feature_expert_image_placement(image):
    mixer = _mixer()
    x = torch.randn(2, 8, D)
    feats = _features(2)
    ctx = _ctx([0, 0], image=image, features=feats, force_seq_experts=torch.tensor([[0], [1]]))
    out = mixer(x, ctx, 0, torch.randn(2, 8, D)).hidden
    positions = ctx.image_mask
    n_img = image[1] - image[0]
    query = torch.zeros(8, dtype=torch.long)
    query[image[0] : image[1]] = torch.arange(n_img) * Q // n_img
    exp_clip = _expected_feature_expert(mixer, 0, "und", x, feats["clip"], positions, query)
    exp_face = _expected_feature_expert(mixer, 1, "und", x, feats["face"], positions, query)
    torch.testing.assert_close(out[0], exp_clip[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], exp_face[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, : image[0]], x[:, : image[0]])
    assert not torch.allclose(out[:, image[0] :], x[:, image[0] :])


def test_feature_expert_broadcast_placement():
    mixer = _mixer(placement="broadcast")
    x = torch.randn(1, 8, D)
    feats = _features(1)
    out = mixer(x, _ctx([0], features=feats, force_seq_experts=torch.tensor([[0]])), 0, x).hidden
    expert = mixer.experts["und"][0]
    pooled = mixer._shared[0]["clip"](feats["clip"]).mean(1, keepdim=True)  # (1, 1, D)
    w = torch.softmax(expert.gate(mixer.norm(x)), dim=-1)[..., :1]
    torch.testing.assert_close(out, w * x + (1 - w) * pooled, atol=1e-5, rtol=1e-5)


def test_missing_features_row_is_copied_and_absent_kind_raises():
    mixer = _mixer()
    x = torch.randn(2, 8, D)
    feats = _features(2)
    feats["face"][1] = 0.0  # no face detected for row 1
    out = mixer(x, _ctx([0, 0], features=feats, force_seq_experts=torch.tensor([[1], [1]])), 0, x).hidden
    assert torch.equal(out[1], x[1])
    assert not torch.allclose(out[0, 4:], x[0, 4:])
    with pytest.raises(ValueError, match="no 'clip' entry"):
        mixer(x, _ctx([0, 0], features={"face": feats["face"]}, force_seq_experts=torch.tensor([[0], [0]])), 0, x)
    with pytest.raises(ValueError, match="image_mask"):
        ctx = RoutingContext(torch.tensor([0]), torch.ones(1, 8, dtype=torch.bool), features=_features(1))
        ctx.force_seq_experts = torch.tensor([[0]])
        mixer(x[:1], ctx, 0, x[:1])


def test_noise_expert_draw_is_seeded_shared_across_layers_and_overridable():
    mixers = build_sequence_mixers(_config())
    x = torch.randn(2, 8, D)
    forced = torch.tensor([[2], [2]])

    def run(seed, features=None):
        ctx = _ctx([1, 1], generator=torch.Generator().manual_seed(seed), force_seq_experts=forced)
        if features is not None:
            ctx.features = features
        outs = [m(x, ctx, i, x).hidden for i, m in enumerate(mixers[:2])]
        return outs, ctx

    (a0, a1), ctx_a = run(0)
    (b0, _), _ = run(0)
    (c0, _), _ = run(1)
    assert torch.equal(a0, b0) and not torch.allclose(a0, c0)
    assert ctx_a.features["noise"].shape == (2, 1, 6)
    eps = ctx_a.features["noise"]
    expert = mixers[1].experts["gen"][2]
    tokens = mixers[0].resamplers["noise"](eps)  # layer 1 uses layer 0's resampler and the same draw
    w = torch.softmax(expert.gate(mixers[1].norm(x)), dim=-1)[..., :1]
    exp = torch.where(ctx_a.image_mask[..., None], w * x + (1 - w) * tokens[:, torch.tensor([0] * 4 + [0, 1, 2, 3])], x)
    torch.testing.assert_close(a1, exp, atol=1e-5, rtol=1e-5)
    shared = {"clip": torch.zeros(2, 1, 12)}
    (d0, _), ctx_d = run(5, {**shared, "noise": eps[:1].expand(2, 1, 6)})  # same eps for both rows (CFG pair)
    assert set(shared) == {"clip"}  # the caller's dict is not mutated
    d_same_x = mixers[0](x[:1].expand(2, 8, D), ctx_d, 0, x[:1].expand(2, 8, D)).hidden
    torch.testing.assert_close(d_same_x[0], d_same_x[1], atol=1e-6, rtol=1e-6)


# --- routing -----------------------------------------------------------------------------------------------------


def test_router_pools_condition_positions_and_renormalises():
    mixer = _mixer(und_experts=["copy", "zero", "copy"], gen_experts=["zero", "copy"], top_k=2)
    with torch.no_grad():
        for router in mixer.routers.values():
            router.weight.normal_()
    x, block_input = torch.randn(2, 8, D), torch.randn(2, 8, D)
    pool = torch.zeros(2, 8, dtype=torch.bool)
    pool[0, :3], pool[1, 1:6] = True, True
    out = mixer(x, _ctx([0, 1], pool_mask=pool), 0, block_input)
    for b, (name, kinds) in enumerate([("und", ["copy", "zero", "copy"]), ("gen", ["zero", "copy"])]):
        pooled = mixer.norm(x[b])[pool[b]].mean(0)
        probs = torch.softmax(mixer.routers[name].weight @ pooled, dim=-1)
        top = probs.topk(2)
        weights = top.values / top.values.sum()
        assert torch.equal(out.routing["seq_experts"][b], top.indices)
        torch.testing.assert_close(out.routing["seq_weights"][b], weights)
        expected = sum(
            w * (x[b] if kinds[i] == "copy" else block_input[b]) for w, i in zip(weights, top.indices, strict=True)
        )
        torch.testing.assert_close(out.hidden[b], expected)
    fallback = mixer(x, _ctx([0, 1]), 0, block_input)  # pool_mask None -> every valid position
    pooled = mixer.norm(x[0]).mean(0)
    assert torch.equal(fallback.routing["seq_experts"][0], (mixer.routers["und"].weight @ pooled).topk(2).indices)


def test_router_gets_gradient_and_feature_expert_trains():
    mixer = _mixer()
    with torch.no_grad():
        mixer.routers["und"].weight.normal_()
    x = torch.randn(2, 8, D, requires_grad=True)
    ctx = _ctx([0, 0], features=_features(2))
    out = mixer(x, ctx, 0, torch.randn(2, 8, D))
    out.hidden.pow(2).sum().backward()
    assert mixer.routers["und"].weight.grad.abs().sum() > 0
    chosen = set(out.routing["seq_experts"].flatten().tolist())
    for e in chosen & {0, 1}:
        expert = mixer.experts["und"][e]
        assert expert.gate.weight.grad.abs().sum() > 0
        assert all(p.grad is not None for p in mixer.resamplers[expert.kind].parameters())


def test_kv_cache_reuses_routing_and_matches_full_forward():
    mixer = _mixer()
    x, block_input = torch.randn(2, 8, D), torch.randn(2, 8, D)
    pool = torch.zeros(2, 8, dtype=torch.bool)
    pool[:, :4] = True  # gen: prompt 0..3, image 4..7; und: condition 0..3, answer 4..7
    image = torch.zeros(2, 8, dtype=torch.bool)
    image[0, 4:], image[1, 1:4] = True, True
    with torch.no_grad():  # make the gen router pick the noise expert for sure
        pooled = mixer.norm(x[0])[:4].mean(0)
        mixer.routers["gen"].weight.zero_()
        mixer.routers["gen"].weight[2] = 10 * pooled
    feats = _features(2)

    def ctx(sl):
        return RoutingContext(
            group_ids=torch.tensor([1, 0]),
            valid=torch.ones(2, sl.stop - sl.start, dtype=torch.bool),
            image_mask=image[:, sl],
            pool_mask=pool[:, sl],
            features=feats,
            generator=torch.Generator().manual_seed(3),
        )

    full = mixer(x, ctx(slice(0, 8)), 5, block_input)
    assert full.routing["seq_experts"][0, 0].item() == 2
    step_ctx = ctx(slice(0, 4))
    prefix = mixer(x[:, :4], step_ctx, 5, block_input[:, :4])
    step = mixer(x[:, 4:], ctx_replace(step_ctx, image, pool), 5, block_input[:, 4:])
    assert torch.equal(step.routing["seq_experts"], full.routing["seq_experts"])
    torch.testing.assert_close(prefix.hidden, full.hidden[:, :4], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(step.hidden, full.hidden[:, 4:], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="cached routing"):
        mixer(x[:, 4:], ctx_replace(ctx(slice(0, 4)), image, pool), 5, block_input[:, 4:])


def ctx_replace(prev: RoutingContext, image: torch.Tensor, pool: torch.Tensor) -> RoutingContext:
    """The context of a decode step over positions 4..7: same cache, features and generator."""
    return RoutingContext(
        group_ids=prev.group_ids,
        valid=torch.ones(2, 4, dtype=torch.bool),
        image_mask=image[:, 4:],
        pool_mask=pool[:, 4:],
        features=prev.features,
        generator=prev.generator,
        routing_cache=prev.routing_cache,
    )


def test_group_isolation():
    mixer = _mixer(und_experts=["copy", "zero", "copy"], gen_experts=["zero", "copy", "copy"])
    x, block_input = torch.randn(4, 8, D), torch.randn(4, 8, D)
    ctx_ids = [0, 1, 0, 1]
    before = mixer(x, _ctx(ctx_ids), 0, block_input)
    with torch.no_grad():
        mixer.routers["und"].weight.normal_(std=5.0)
    after = mixer(x, _ctx(ctx_ids), 0, block_input)
    assert torch.equal(after.hidden[[1, 3]], before.hidden[[1, 3]])
    assert torch.equal(after.routing["seq_experts"][[1, 3]], before.routing["seq_experts"][[1, 3]])


def test_forced_routing_validation_and_pool_shape():
    mixer = _mixer()
    x = torch.randn(2, 8, D)
    with pytest.raises(ValueError, match="index >= 4"):
        mixer(x, _ctx([0, 1], force_seq_experts=torch.tensor([[4], [0]])), 0, x)
    with pytest.raises(ValueError, match=r"\(B, k\)"):
        mixer(x, _ctx([0, 1], force_seq_experts=torch.tensor([1, 0])), 0, x)
    with pytest.raises(ValueError, match="pool_mask"):
        mixer(x, _ctx([0, 1], pool_mask=torch.ones(2, 5, dtype=torch.bool)), 0, x)


def test_sequence_balance_loss_is_lambda_under_uniform_routing():
    mixer = _mixer(top_k=4, balance_coef=0.004)
    with torch.no_grad():
        for router in mixer.routers.values():
            router.weight.zero_()
    x = torch.randn(3, 8, D)
    ctx = _ctx([0, 1, 1], features=_features(3), generator=torch.Generator().manual_seed(0))
    out = mixer(x, ctx, 0, x)
    assert out.aux_loss.item() == pytest.approx(2 * 0.004, abs=1e-9)
    torch.testing.assert_close(out.routing["seq_weights"], torch.full((3, 4), 0.25))
    assert _mixer(top_k=4)(x, _ctx([0, 1, 1], features=_features(3)), 0, x).aux_loss.item() == 0.0


def test_bf16_autocast_forward_backward():
    mixer = _mixer()
    with torch.no_grad():
        mixer.routers["und"].weight.normal_()
    x = torch.randn(3, 8, D, requires_grad=True)
    ctx = _ctx([0, 1, 0], features=_features(3), force_seq_experts=torch.tensor([[0, 1], [2, 1], [1, 3]]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mixer(x, ctx, 0, x * 0.5)
    assert out.hidden.dtype == torch.float32 and torch.isfinite(out.hidden).all()
    out.hidden.sum().backward()
    assert torch.isfinite(x.grad).all() and mixer.resamplers["clip"].proj_in.weight.grad is not None


# --- config and factories ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(und_experts=["copy", "bogus"]), "seq_moe.und_experts"),
        (dict(gen_experts=[]), "seq_moe.gen_experts"),
        (dict(top_k=5), "seq_moe.top_k"),
        (dict(placement="everywhere"), "seq_moe.placement"),
        (dict(feature_dims={"clip": 12}), "seq_moe.feature_dims"),
    ],
)
def test_bad_seq_config_raises_one_line_error_naming_the_field(kw, field):
    with pytest.raises(ConfigError) as info:
        SeqMoEConfig(**kw)
    assert field in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kw,field", [(dict(noise_dim=0), "seq_moe.noise_dim"), (dict(feature_dims={"clip": -3, "face": 8}), "clip")]
)
def test_bad_feature_widths_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        build_sequence_mixers(_config(**kw))


def test_unknown_expert_kind_in_factory():
    with pytest.raises(ValueError, match="unknown sequence expert kind 'bogus'"):
        make_seq_expert("bogus", D, "image", 6)
    with pytest.raises(ValueError, match="no resampler"):
        GroupedSequenceMoE(
            norm=nn.Identity(),
            routers=_mixer().routers,
            experts=nn.ModuleDict(
                {g: nn.ModuleList(make_seq_expert(k, D, "image", 6) for k in UND_KINDS) for g in ("und", "gen")}
            ),
            resamplers={},
        )


def test_mixers_share_resamplers_registered_once(tmp_path):
    config = _config()
    mixers = build_sequence_mixers(config)
    assert len(mixers) == 3 and all(isinstance(m, SequenceMixer) for m in mixers)
    assert sorted(build_resamplers(config).keys()) == ["clip", "face", "noise"]
    assert all(m._shared[0] is mixers[0].resamplers for m in mixers)
    model = nn.ModuleList(mixers)
    keys = [k for k in model.state_dict() if ".resamplers." in k]
    assert keys and all(k.startswith("0.resamplers.") for k in keys)
    save_tensors(tmp_path / "m.safetensors", model.state_dict())  # no aliased tensors
    n_res = sum(p.numel() for p in mixers[0].resamplers.parameters())
    n_layer = sum(p.numel() for p in mixers[1].parameters())
    assert sum(p.numel() for p in model.parameters()) == n_res + 3 * n_layer


# --- feature cache -----------------------------------------------------------------------------------------------


class _ToyEncoder:
    name, dim = "face", 8

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3)).repeat(1, 3)[:, None, :8] * 2  # (B, 1, 8)


def test_feature_cache_round_trip_and_lookup(tmp_path):
    images = [(f"img{i}", torch.rand(3, 4, 4) * 2 - 1) for i in range(5)]
    cache = FeatureCache.from_encoder(_ToyEncoder(), images, batch_size=2)
    assert len(cache) == 5 and cache.shape == (1, 8) and "img3" in cache
    cache.save(tmp_path / "face.safetensors")
    loaded = FeatureCache.load(tmp_path / "face.safetensors")
    assert loaded.name == "face" and len(loaded) == 5
    feats, present = loaded.lookup(["img1", None, "unknown", "img4"])
    assert feats.shape == (4, 1, 8) and present.tolist() == [True, False, False, True]
    torch.testing.assert_close(feats[0], _ToyEncoder().encode(images[1][1][None])[0])
    assert feats[1].abs().sum() == 0 and feats[2].abs().sum() == 0
    with pytest.raises(ValueError, match="cache holds"):
        cache.add("bad", torch.zeros(2, 8))


def test_feature_cache_errors(tmp_path):
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a unif2ace feature cache"):
        FeatureCache.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        FeatureCache.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="empty"):
        FeatureCache("clip").lookup(["a"])


def test_stack_features():
    feats, present = stack_features([torch.ones(8), None, 2 * torch.ones(1, 8)])
    assert feats.shape == (3, 1, 8) and present.tolist() == [True, False, True]
    assert feats[1].abs().sum() == 0 and feats[2].eq(2).all()
    with pytest.raises(ValueError, match="every row is missing"):
        stack_features([None, None])
    assert stack_features([None], shape=(2, 4))[0].shape == (1, 2, 4)
    with pytest.raises(ValueError, match="shapes"):
        stack_features([torch.ones(8), torch.ones(2, 8)])
