"""Ablation switches build and train (dense / token-MoE / sequence-MoE / both; alpha; score-only), routing report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from unif2ace.training.run import run_training

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "training"))
from train_helpers import make_dataset, model_factory, tiny_config  # noqa: E402

TOKEN_MOE = {"enabled": True, "num_routed": 4, "top_k": 2, "routed_intermediate": 16, "shared_intermediate": 32}
SEQ_MOE = {
    "enabled": True,
    "feature_dims": {"clip": 8, "face": 12},
    "noise_dim": 8,
    "resampler": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "num_queries": 16},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("abl"))


def _run(data, out: Path, **overrides):
    records, tokens = data
    cfg = tiny_config(
        records,
        tokens,
        **{"stages": [{"name": "main", "steps": 2, "lr": 1e-3}], "train.checkpoint_every": 100, **overrides},
    )
    result = run_training(cfg, out, model_factory=model_factory(), cpu=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return result, metrics


@pytest.mark.parametrize("variant", ["dense", "token", "sequence", "both"])
def test_moe_switches_build_and_train(data, tmp_path, variant):
    token = variant in ("token", "both")
    seq = variant in ("sequence", "both")
    overrides = {
        "model.token_moe": TOKEN_MOE if token else {"enabled": False},
        "model.seq_moe": SEQ_MOE if seq else {"enabled": False},
    }
    result, metrics = _run(data, tmp_path / variant, **overrides)
    assert result.global_step == 2 and all(map(lambda v: v == v, result.losses))  # finite, not NaN
    has_balance = "loss/balance/moe" in metrics[-1]
    assert has_balance == token  # the token MoE's balance loss is in the objective


def test_routing_report_counts_both_levels(data, tmp_path, monkeypatch):
    import unif2ace.training.run as run
    from unif2ace.cli.main import main

    factory = model_factory()
    monkeypatch.setattr(run, "_default_model_factory", factory)
    result, _ = _run(data, tmp_path / "run", **{"model.token_moe": TOKEN_MOE, "model.seq_moe": SEQ_MOE})
    assert main(["routing", str(result.checkpoint), "--batches", "2"]) == 0
    png = result.checkpoint / "routing.png"
    usage = json.loads(png.with_suffix(".json").read_text())
    assert {"token/und", "token/gen", "seq/und", "seq/gen"} <= set(usage)
    assert [len(usage[k]) for k in ("token/und", "seq/gen")] == [2, 2]  # one row per layer
    assert sum(map(sum, usage["seq/gen"])) == 2 * 2 * 2 * 2  # 2 batches x 2 T2I rows x top-2, per layer x 2 layers
    assert sum(map(sum, usage["seq/und"])) == 2 * 2 * 2 * 2
    assert sum(usage["token/gen"][0]) > 0 and sum(usage["token/und"][1]) > 0
    assert png.stat().st_size > 1000


@pytest.mark.parametrize(
    ("mode", "alpha"), [("mask_only", 0.0), ("d3diff", 0.001), ("d3diff", 0.01), ("d3diff", 0.1), ("score_only", 0.01)]
)
def test_loss_switches(data, tmp_path, mode, alpha):
    _, metrics = _run(data, tmp_path / f"{mode}{alpha}", **{"train.loss.mode": mode, "train.loss.alpha": alpha})
    for m in metrics:
        mask_ce, score, t2i = m["loss/t2i_mask_ce"], m["loss/t2i_score"], m["loss/t2i"]
        expected = {"mask_only": mask_ce, "d3diff": mask_ce + alpha * score, "score_only": alpha * score}[mode]
        assert t2i == pytest.approx(expected, rel=1e-5)
        assert m["loss/total"] == pytest.approx(t2i + m["loss/mmu"], rel=1e-5)


def test_gradient_checkpointing_and_loader_workers_do_not_change_the_run(data, tmp_path):
    base, _ = _run(data, tmp_path / "base")
    ckpt, _ = _run(data, tmp_path / "ckpt", **{"train.gradient_checkpointing": True})
    workers, _ = _run(data, tmp_path / "workers", **{"data.num_workers": 2})
    assert ckpt.losses == pytest.approx(base.losses, abs=1e-6)
    assert workers.losses == base.losses  # batches depend only on (seed, stream, position)
