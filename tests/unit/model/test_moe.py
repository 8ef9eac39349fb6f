"""Grouped token-level MoE (spec §3.2): dispatch, balance loss, groups, pads, gradients, upcycling, config errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unif2ace.config.base import ConfigError
from unif2ace.config.model import TokenMoEConfig
from unif2ace.model.interfaces import RoutingContext
from unif2ace.model.moe import Expert, GroupedTokenMoE, TopKRouter, build_grouped_token_moe, gelu_new


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many tiny ops: one intra-op thread avoids OpenMP barrier stalls on shared, oversubscribed CI cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


D = 16


def _phi_gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class _DenseMLP(nn.Module):
    """Phi MLP written independently of moe.py."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(_phi_gelu(self.fc1(x)))


def _cfg(**kw) -> TokenMoEConfig:
    base = dict(enabled=True, num_routed=4, num_shared=1, top_k=2, routed_intermediate=8, shared_intermediate=12)
    base.update(kw)
    return TokenMoEConfig(**base)


def _ctx(group_ids, valid) -> RoutingContext:
    return RoutingContext(group_ids=torch.tensor(group_ids), valid=valid)


def _reference(moe: GroupedTokenMoE, x: torch.Tensor, group_ids: list[int]) -> torch.Tensor:
    """Token-by-token loop: sum of shared experts + sum of gate * selected routed expert."""
    out = torch.zeros_like(x)
    for b, gid in enumerate(group_ids):
        name = ("und", "gen")[gid]
        for t in range(x.shape[1]):
            u = x[b, t]
            probs = torch.softmax(moe.routers[name].weight.float() @ u.float(), dim=-1)
            gates, idx = probs.topk(moe.routers[name].top_k)
            if moe.routers[name].renormalize:
                gates = gates / gates.sum()
            y = sum(s(u) for s in moe.shared_experts[name]) if len(moe.shared_experts[name]) else torch.zeros_like(u)
            for g, i in zip(gates, idx, strict=True):
                y = y + g * moe.experts[name][int(i)](u)
            out[b, t] = y
    return out


def test_gelu_new_is_phi_formula():
    x = torch.linspace(-6, 6, 101)
    assert torch.allclose(gelu_new(x), _phi_gelu(x), atol=1e-6)


def test_router_is_fp32_under_autocast_and_renormalises():
    router = TopKRouter(D, 4, 2, renormalize=True)
    x = torch.randn(10, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs, gates, idx = router(x.bfloat16())
    assert probs.dtype == torch.float32 and gates.dtype == torch.float32
    ref = torch.softmax(x.bfloat16().float() @ router.weight.T, dim=-1)
    torch.testing.assert_close(probs, ref)
    torch.testing.assert_close(gates.sum(-1), torch.ones(10))
    assert torch.equal(idx, ref.topk(2).indices)


@pytest.mark.parametrize("renormalize", [False, True])
def test_dispatch_matches_token_loop(renormalize):
    moe = build_grouped_token_moe(D, _cfg(renormalize=renormalize))
    x = torch.randn(3, 5, D)
    valid = torch.ones(3, 5, dtype=torch.bool)
    out = moe(x, _ctx([0, 1, 0], valid))
    torch.testing.assert_close(out.hidden, _reference(moe, x, [0, 1, 0]), atol=1e-5, rtol=1e-5)


def test_no_shared_experts():
    moe = build_grouped_token_moe(D, _cfg(num_shared=0, top_k=1))
    x = torch.randn(2, 4, D)
    out = moe(x, _ctx([1, 0], torch.ones(2, 4, dtype=torch.bool)))
    torch.testing.assert_close(out.hidden, _reference(moe, x, [1, 0]), atol=1e-5, rtol=1e-5)


def test_balance_loss_matches_formula():
    cfg = _cfg(num_routed=5, top_k=2, balance_coef_und=0.02, balance_coef_gen=0.5)
    moe = build_grouped_token_moe(D, cfg, router_init_std=1.0)
    x = torch.randn(4, 6, D)
    valid = torch.rand(4, 6) > 0.3
    group_ids = [0, 1, 1, 0]
    out = moe(x, _ctx(group_ids, valid))
    expected = 0.0
    for gid, name, lam in ((0, "und", 0.02), (1, "gen", 0.5)):
        rows = [b for b, g in enumerate(group_ids) if g == gid]
        tokens = torch.cat([x[b][valid[b]] for b in rows])  # (T_g, D)
        probs = torch.softmax(tokens @ moe.routers[name].weight.T, dim=-1)
        chosen = probs.topk(2).indices
        f = torch.stack([(chosen == i).any(-1).sum() for i in range(5)]).float() * 5 / (2 * tokens.shape[0])
        expected += lam * float((f * probs.mean(0)).sum().detach())
    assert out.aux_loss.item() == pytest.approx(expected, rel=1e-5)


def test_balance_loss_is_lambda_under_uniform_routing_topk_equals_n():
    moe = build_grouped_token_moe(D, _cfg(num_routed=4, top_k=4, balance_coef_und=0.03, balance_coef_gen=0.07))
    for router in moe.routers.values():
        nn.init.zeros_(router.weight)  # every prob exactly 1/N; top_k = N selects every expert for every token
    x = torch.randn(3, 7, D)
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[2, 5:] = False
    assert moe(x, _ctx([0, 1, 1], valid)).aux_loss.item() == pytest.approx(0.10, abs=1e-7)
    assert moe(x, _ctx([0, 0, 0], valid)).aux_loss.item() == pytest.approx(0.03, abs=1e-7)
    assert moe(x, _ctx([1, 1, 1], valid)).aux_loss.item() == pytest.approx(0.07, abs=1e-7)


def test_balance_loss_is_lambda_under_uniform_routing_topk_below_n():
    # N=4, K=2: token A has probs (a, a, b, b), token B (b, b, a, a): f_i = 1 and P_i = 1/4 for every expert.
    moe = build_grouped_token_moe(2, _cfg(num_routed=4, top_k=2, balance_coef_und=0.05))
    with torch.no_grad():
        moe.routers["und"].weight.copy_(torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]]))
    x = torch.tensor([[[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, 3.0]]])  # (1, 4, 2)
    out = moe(x, _ctx([0], torch.ones(1, 4, dtype=torch.bool)))
    assert out.aux_loss.item() == pytest.approx(0.05, abs=1e-7)
    assert out.routing["token_counts"][0].tolist() == [2, 2, 2, 2]


def test_pad_tokens_excluded_from_statistics():
    moe = build_grouped_token_moe(D, _cfg(), router_init_std=1.0)
    x = torch.randn(2, 6, D)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 3:] = False
    out = moe(x, _ctx([0, 0], valid))
    packed = torch.cat([x[0], x[1, :3]]).unsqueeze(0)  # (1, 9, D) the valid tokens only
    ref = moe(packed, _ctx([0], torch.ones(1, 9, dtype=torch.bool)))
    assert out.aux_loss.item() == pytest.approx(ref.aux_loss.item(), rel=1e-6)
    assert torch.equal(out.routing["token_counts"], ref.routing["token_counts"])
    x2 = x.clone()
    x2[1, 3:] = 100 * torch.randn(3, D)  # pad contents must not matter
    out2 = moe(x2, _ctx([0, 0], valid))
    assert out2.aux_loss.item() == pytest.approx(out.aux_loss.item(), rel=1e-6)
    assert torch.equal(out2.routing["token_counts"], out.routing["token_counts"])
    torch.testing.assert_close(out2.hidden[valid], out.hidden[valid])


def test_token_counts_record():
    moe = build_grouped_token_moe(D, _cfg(top_k=3))
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[0, 4] = False
    counts = moe(torch.randn(3, 5, D), _ctx([0, 1, 0], valid)).routing["token_counts"]
    assert counts.shape == (2, 4)
    assert counts[0].sum().item() == 3 * 9 and counts[1].sum().item() == 3 * 5


def test_group_isolation():
    moe = build_grouped_token_moe(D, _cfg())
    x = torch.randn(4, 5, D)
    ctx = _ctx([0, 1, 0, 1], torch.ones(4, 5, dtype=torch.bool))
    before = moe(x, ctx).hidden
    with torch.no_grad():
        moe.routers["und"].weight.normal_()
        for p in moe.experts["und"].parameters():
            p.add_(torch.randn_like(p))
    after = moe(x, ctx).hidden
    assert torch.equal(after[[1, 3]], before[[1, 3]])
    assert not torch.allclose(after[[0, 2]], before[[0, 2]])


def _assert_routed_grads(moe: GroupedTokenMoE, counts: torch.Tensor, params: tuple[str, ...]) -> None:
    for gid, name in enumerate(("und", "gen")):
        for e, expert in enumerate(moe.experts[name]):
            assert counts[gid, e] > 0, "test setup: every expert should receive tokens"
            for pname in params:
                grad = getattr(expert, pname.split(".")[0]).get_parameter(pname.split(".")[1]).grad
                assert grad is not None and grad.abs().sum() > 0, f"{name} expert {e} {pname} got no gradient"
        assert moe.routers[name].weight.grad.abs().sum() > 0


def test_every_routed_expert_with_tokens_gets_gradient():
    moe = build_grouped_token_moe(D, _cfg(), router_init_std=1.0)
    x = torch.randn(4, 16, D)
    out = moe(x, _ctx([0, 1, 0, 1], torch.ones(4, 16, dtype=torch.bool)))
    (out.hidden.pow(2).mean() + out.aux_loss).backward()
    _assert_routed_grads(moe, out.routing["token_counts"], ("fc1.weight", "fc2.weight", "fc2.bias"))


def test_upcycled_routed_experts_get_fc2_gradient():
    moe = GroupedTokenMoE.from_dense(_DenseMLP(D, 12), _cfg(), router_init_std=1.0)
    x = torch.randn(4, 16, D)
    out = moe(x, _ctx([0, 1, 0, 1], torch.ones(4, 16, dtype=torch.bool)))
    (out.hidden.pow(2).mean() + out.aux_loss).backward()
    _assert_routed_grads(moe, out.routing["token_counts"], ("fc2.weight", "fc2.bias"))


@pytest.mark.parametrize(
    "num_shared,shared_intermediate",
    [(1, 12), (2, 6), (3, 4), (1, 20), (3, 5)],  # exact copy, exact split, padding
)
def test_from_dense_computes_the_dense_mlp(num_shared, shared_intermediate):
    dense = _DenseMLP(D, 12)
    cfg = _cfg(num_shared=num_shared, shared_intermediate=shared_intermediate, routed_intermediate=5)
    moe = GroupedTokenMoE.from_dense(dense, cfg)
    x = torch.randn(3, 7, D)
    out = moe(x, _ctx([0, 1, 1], torch.ones(3, 7, dtype=torch.bool)))
    assert (out.hidden - dense(x)).abs().max().item() <= 1e-6
    for name in ("und", "gen"):
        for expert in moe.experts[name]:
            assert expert.fc2.weight.abs().sum() == 0 and expert.fc2.bias.abs().sum() == 0
            assert expert.fc1.weight.abs().sum() > 0


def test_from_dense_refuses_narrow_shared_experts():
    with pytest.raises(ValueError, match="token_moe.shared_intermediate"):
        GroupedTokenMoE.from_dense(_DenseMLP(D, 12), _cfg(num_shared=1, shared_intermediate=8))
    with pytest.raises(ValueError, match="token_moe.num_shared"):
        GroupedTokenMoE.from_dense(_DenseMLP(D, 12), _cfg(num_shared=0))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(num_routed=4, top_k=5), "token_moe.top_k"),
        (dict(top_k=0), "token_moe.top_k"),
        (dict(num_routed=0, top_k=1), "token_moe.num_routed"),
        (dict(num_shared=-1), "token_moe.num_shared"),
        (dict(routed_intermediate=0), "token_moe.routed_intermediate"),
        (dict(balance_coef_gen=-1.0), "token_moe.balance_coef"),
    ],
)
def test_bad_config_raises_one_line_error_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        _cfg(**kwargs)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_constructor_validation():
    with pytest.raises(ValueError, match="router top_k"):
        TopKRouter(D, 2, 3)
    good = build_grouped_token_moe(D, _cfg())
    with pytest.raises(ValueError, match="differ from router groups"):
        GroupedTokenMoE(
            routers=good.routers,
            shared_experts=nn.ModuleDict({"und": good.shared_experts["und"]}),
            experts=good.experts,
            balance_coefs={"und": 0.0, "gen": 0.0},
        )
    with pytest.raises(ValueError, match="3 routed experts"):
        GroupedTokenMoE(
            routers=nn.ModuleDict({"und": TopKRouter(D, 4, 2)}),
            shared_experts=nn.ModuleDict({"und": nn.ModuleList()}),
            experts=nn.ModuleDict({"und": nn.ModuleList(Expert(D, 4) for _ in range(3))}),
            balance_coefs={"und": 0.0},
        )


def test_missing_group_and_context_errors():
    moe = GroupedTokenMoE(
        routers=nn.ModuleDict({"und": TopKRouter(D, 2, 1)}),
        shared_experts=nn.ModuleDict({"und": nn.ModuleList()}),
        experts=nn.ModuleDict({"und": nn.ModuleList(Expert(D, 4) for _ in range(2))}),
        balance_coefs={"und": 0.0},
    )
    x = torch.randn(2, 3, D)
    assert moe(x, _ctx([0, 0], torch.ones(2, 3, dtype=torch.bool))).hidden.shape == (2, 3, D)
    with pytest.raises(ValueError, match="without 'gen' experts"):
        moe(x, _ctx([0, 1], torch.ones(2, 3, dtype=torch.bool)))
    with pytest.raises(ValueError, match="RoutingContext"):
        moe(x, None)
    with pytest.raises(ValueError, match="do not match hidden states"):
        moe(x, _ctx([0, 0], torch.ones(2, 4, dtype=torch.bool)))


def test_bf16_autocast_forward_backward():
    moe = build_grouped_token_moe(D, _cfg())
    x = torch.randn(2, 5, D, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moe(x, _ctx([0, 1], torch.ones(2, 5, dtype=torch.bool)))
    assert out.aux_loss.dtype == torch.float32 and torch.isfinite(out.hidden).all()
    (out.hidden.float().sum() + out.aux_loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
