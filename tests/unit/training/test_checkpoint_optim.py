"""Checkpoint atomicity / round trips, optimizer flattening, parameter groups, LR schedule, freeze groups, EMA."""

from __future__ import annotations

import errno
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from unif2ace.training import checkpoint as ckpt
from unif2ace.training.ema import EMA
from unif2ace.training.init import check_compatible, load_weights_into
from unif2ace.training.optim import apply_freeze, build_optimizer, classify_parameters, lr_factor


class GroupedTokenMoE(nn.Module):  # the class name marks its parameters as new, like the real MoE
    def __init__(self):
        super().__init__()
        self.router = nn.Linear(8, 4, bias=False)
        self.experts = nn.ModuleList([nn.Linear(8, 8) for _ in range(4)])


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.norm = nn.LayerNorm(8)
        self.proj = nn.Linear(8, 8)
        self.moe = GroupedTokenMoE()
        self.resampler_latents = nn.Parameter(torch.zeros(1, 2, 8))

    def forward(self, ids):
        h = self.norm(self.embed(ids))
        return self.proj(h) + self.moe.experts[0](h) + self.moe.router(h).sum(-1, keepdim=True)


def test_parameter_classification_and_groups():
    model = Toy()
    info = classify_parameters(model)
    assert not info["embed.weight"].decay and not info["norm.weight"].decay and not info["proj.bias"].decay
    assert info["proj.weight"].decay and not info["proj.weight"].new
    assert info["moe.router.weight"].new and info["moe.experts.0.weight"].new and info["resampler_latents"].new
    opt, specs = build_optimizer(model, lr=1e-3, new_lr=5e-3, weight_decay=0.1, betas=(0.9, 0.99), eps=1e-8)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["backbone_decay"]["weight_decay"] == 0.1 and by_name["backbone_no_decay"]["weight_decay"] == 0.0
    assert by_name["new_decay"]["lr"] == 5e-3 and by_name["backbone_decay"]["lr"] == 1e-3
    assert sum(len(s.params) for s in specs) == len(list(model.parameters()))


def test_freeze_groups():
    model = Toy()
    names = apply_freeze(model, ["routers", "resamplers"], [])
    assert sorted(names) == ["moe.router.weight", "resampler_latents"]
    assert not model.proj.weight.requires_grad and model.moe.router.weight.requires_grad
    names = apply_freeze(model, [], ["backbone"])
    assert all("moe" in n or "resampler" in n for n in names)
    assert apply_freeze(model, ["proj.*"], ["*.bias"]) == ["proj.weight"]
    with pytest.raises(ValueError, match="matches no parameter"):
        apply_freeze(model, ["nothing.*"], [])


def test_lr_schedule():
    assert lr_factor(0, 100, 10, "cosine", 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(70, 100, 0, "constant", 0.0) == 1.0
    mid = lr_factor(32, 100, 10, "cosine", 0.2)
    assert mid == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 22 / 90)))


def _trained_optimizer():
    torch.manual_seed(0)
    model = Toy()
    opt, _ = build_optimizer(model, 1e-2, 1e-2, 0.01, (0.9, 0.999), 1e-8)
    for _ in range(3):
        model(torch.tensor([[1, 2, 3]])).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_optimizer_state_round_trip_gives_identical_next_step():
    model, opt = _trained_optimizer()
    tensors, meta = ckpt.flatten_optimizer_state(opt.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    tensors = {k: v.clone() for k, v in tensors.items()}  # as if read back from disk (no shared buffers)
    clone = Toy()
    clone.load_state_dict(model.state_dict())
    opt2, _ = build_optimizer(clone, 1e-2, 1e-2, 0.01, (0.9, 0.999), 1e-8)
    opt2.load_state_dict(ckpt.unflatten_optimizer_state(tensors, meta))
    for m, o in ((model, opt), (clone, opt2)):
        m(torch.tensor([[4, 5]])).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def _payload(model, opt, step):
    return ckpt.CheckpointPayload(
        model_state=model.state_dict(),
        model_config={"hidden_size": 8},
        train_config_yaml="x: 1\n",
        optimizer_state=opt.state_dict(),
        state=ckpt.TrainingState(global_step=step, data_position={"t2i": step * 4}),
    )


def test_write_prune_and_restore(tmp_path):
    model, opt = _trained_optimizer()
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        ckpt.write_checkpoint(root, _payload(model, opt, step), keep_last=2)
    assert [p.name for p in ckpt.checkpoint_dirs(root)] == ["step-0000004", "step-0000006"]
    latest = ckpt.latest_checkpoint(root)
    assert (latest / ckpt.COMPLETE).is_file() and not list(root.glob(".tmp-*"))
    state = ckpt.load_training_state(latest)
    assert state.global_step == 6 and state.data_position == {"t2i": 24}
    fresh = Toy()
    load_weights_into(fresh, latest)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))


def test_rng_state_round_trip():
    tensors, meta = ckpt.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.set_rng_state(tensors, meta)
    assert random.random() == expected[0] and np.random.rand() == expected[1]
    assert torch.equal(torch.rand(3), expected[2])


def test_partial_checkpoint_is_never_loadable(tmp_path):
    model, opt = _trained_optimizer()
    root = tmp_path / "checkpoints"
    ckpt.write_checkpoint(root, _payload(model, opt, 2))
    partial = root / "step-0000004"  # e.g. a crash between files: no COMPLETE marker
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"garbage")
    (root / ".tmp-step-0000006").mkdir()
    assert ckpt.latest_checkpoint(root).name == "step-0000002"
    with pytest.raises(ckpt.CheckpointError, match="not a complete checkpoint"):
        ckpt.load_training_state(partial)
    with pytest.raises(FileNotFoundError, match="unfinished checkpoint"):
        load_weights_into(Toy(), partial)
    assert ckpt.remove_partial(root) == [root / ".tmp-step-0000006"]


def test_disk_full_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = _trained_optimizer()
    root = tmp_path / "checkpoints"
    ckpt.write_checkpoint(root, _payload(model, opt, 2))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_tensors", full)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.write_checkpoint(root, _payload(model, opt, 4))
    message = str(err.value)
    assert "\n" not in message and "ENOSPC" in message and "step-0000002 is intact" in message
    assert [p.name for p in ckpt.checkpoint_dirs(root)] == ["step-0000002"] and not list(root.glob(".tmp-*"))


def test_compatibility_check_names_the_key():
    model = Toy()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["proj.weight"] = torch.zeros(4, 8)
    with pytest.raises(ValueError, match=r"key 'proj.weight' has shape \(4, 8\)"):
        check_compatible(model, state, "ckpt", strict=True)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("moe.")}
    assert set(check_compatible(model, state, "ckpt", strict=False)) == {
        "moe.router.weight",
        "moe.experts.0.weight",
        "moe.experts.0.bias",
        "moe.experts.1.weight",
        "moe.experts.1.bias",
        "moe.experts.2.weight",
        "moe.experts.2.bias",
        "moe.experts.3.weight",
        "moe.experts.3.bias",
    }
    with pytest.raises(ValueError, match="model key 'moe.router.weight' is missing"):
        check_compatible(model, state, "ckpt", strict=True)
    del state["proj.bias"]
    with pytest.raises(ValueError, match="model key 'proj.bias' is missing"):
        check_compatible(model, state, "ckpt", strict=False)
    with pytest.raises(ValueError, match="key 'extra' does not exist"):
        check_compatible(model, {"extra": torch.zeros(1)}, "ckpt", strict=False)


def test_ema_tracks_average_and_round_trips():
    model = nn.Linear(2, 2, bias=False)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # warm-up decay min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.shadow["weight"], 0.1 * start + 0.9 * model.weight)
    other = EMA(nn.Linear(2, 2, bias=False), decay=0.5)
    other.load_state_dict(ema.state_dict(), ema.num_updates)
    target = nn.Linear(2, 2, bias=False)
    other.copy_to(target)
    assert torch.equal(target.weight, ema.shadow["weight"]) and other.num_updates == 1


def test_atomic_writes_get_the_usual_file_permissions(tmp_path):
    import os

    from unif2ace.utils.io import atomic_write_json, save_tensors

    umask = os.umask(0o022)
    try:
        save_tensors(tmp_path / "w.safetensors", {"a": torch.zeros(2)})  # safetensors recreates the file as 0600
        atomic_write_json(tmp_path / "c.json", {"a": 1})
    finally:
        os.umask(umask)
    for name in ("w.safetensors", "c.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "w.safetensors"]  # no temporaries left
