"""MaskGIT sampler against a mock model: seeding, CFG, known tokens, callback, schedules, argument checks."""

from __future__ import annotations

import pytest
import torch
from sampling_mocks import CondOnly, MockImageModel

from unif2ace.losses import get_mask_schedule
from unif2ace.sampling import MaskGITScheduler, guided_logits, maskgit_sample

N, C, B, STEPS = 24, 20, 3, 6


def run(model=None, **kwargs):
    model = model or MockImageModel(N, C)
    kwargs.setdefault("steps", STEPS)
    return maskgit_sample(model, N, B, C, **kwargs)


def test_seeded_runs_repeat_exactly():
    a = run(generator=123, guidance_scale=1.5)
    b = run(generator=torch.Generator().manual_seed(123), guidance_scale=1.5)
    c = run(generator=124, guidance_scale=1.5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.long and a.shape == (B, N) and a.min() >= 0 and a.max() < C


def test_temperature_zero_is_deterministic():
    sched = lambda: MaskGITScheduler(STEPS, temperature=0.0, sample_temperature=0.0)  # noqa: E731
    a = run(generator=1, scheduler=sched())
    b = run(generator=2, scheduler=sched())
    torch.manual_seed(99)
    c = run(scheduler=sched())
    assert torch.equal(a, b) and torch.equal(a, c)


def test_cfg_zero_equals_unguided_without_uncond_call():
    model = CondOnly(N, C)
    a = run(model, generator=5, guidance_scale=0.0)
    assert model.calls == [True] * STEPS
    guided = MockImageModel(N, C)
    b = run(guided, generator=5, guidance_scale=1e-30)  # uncond called, but a vanishing weight
    assert guided.calls == [True, False] * STEPS
    assert torch.equal(a, b)


def test_cfg_formula():
    model = MockImageModel(N, C)
    ids = torch.full((B, N), C)
    w = 2.5
    expected = (1 + w) * model(ids, True) - w * model(ids, False)
    torch.testing.assert_close(guided_logits(model, ids, w), expected)


def test_known_tokens_never_change_and_callback_per_step():
    gen = torch.Generator().manual_seed(0)
    known = torch.randint(0, C, (B, N), generator=gen)
    unknown = torch.rand(B, N, generator=gen) < 0.5
    known[unknown] = C
    seen: list[tuple[int, int, torch.Tensor]] = []
    out = run(generator=3, known_tokens=known, guidance_scale=1.0, callback=lambda k, t, ids: seen.append((k, t, ids)))
    assert [(k, t) for k, t, _ in seen] == [(k, STEPS) for k in range(STEPS)]
    assert torch.equal(out[~unknown], known[~unknown])
    for _, _, ids in seen:
        assert torch.equal(ids[~unknown], known[~unknown])
    assert out.min() >= 0 and out.max() < C


def test_fully_known_returns_input():
    known = torch.randint(0, C, (B, N))
    assert torch.equal(run(known_tokens=known, generator=0), known)


@pytest.mark.parametrize("name", ["cosine", "linear", "pow2", "pow0.5"])
def test_masked_count_follows_schedule(name):
    counts = []
    sched = MaskGITScheduler(STEPS, schedule=name)
    run(generator=0, scheduler=sched, callback=lambda k, t, ids: counts.append((ids == C).sum(-1)))
    schedule = get_mask_schedule(name)
    assert counts[-1].tolist() == [0] * B  # the last callback gets the complete sample
    for k, count in enumerate(counts[:-1]):
        unknown_before = N if k == 0 else int(counts[k - 1][0])
        target = int(torch.floor(N * schedule(torch.tensor((k + 1) / STEPS))))
        expected = max(1, min(unknown_before - 1, target))
        assert count.tolist() == [expected] * B


def test_inpainting_mask_len_uses_initial_unknown_count():
    known = torch.zeros(B, N, dtype=torch.long)
    known[:, :8] = C  # 8 unknown per row
    counts = []
    run(known_tokens=known, generator=0, callback=lambda k, t, ids: counts.append(int((ids == C).sum(-1)[0])))
    cos = get_mask_schedule("cosine")
    expected, unknown = [], 8
    for k in range(STEPS - 1):  # mask_len = floor(N_0 * m(r)) with N_0 = 8 initial unknowns, not N = 24
        unknown = max(1, min(unknown - 1, int(torch.floor(8 * cos(torch.tensor((k + 1) / STEPS))))))
        expected.append(unknown)
    assert counts == expected + [0]


def test_temperature_decays():
    mult = MaskGITScheduler(4, temperature=2.0, temperature_decay="multiplicative")
    assert mult.temperatures == [1.5, 0.75, 0.1875, 0.0]
    lin = MaskGITScheduler(4, temperature=2.0, temperature_decay="linear")
    assert lin.temperatures == [1.5, 1.0, 0.5, 0.0]
    const = MaskGITScheduler(4, temperature=2.0, temperature_decay="constant")
    assert const.temperatures == [2.0] * 4
    const.set_timesteps(2)
    assert const.num_steps == 2 and len(const.mask_ratios) == 2


def test_scheduler_step_contract():
    sched = MaskGITScheduler(3)
    logits = torch.randn(B, N, C)
    ids = torch.full((B, N), C)
    out = sched.step(logits, 0, ids, torch.Generator().manual_seed(0))
    assert out.ids.shape == (B, N) and out.masking.dtype == torch.bool
    assert torch.equal(out.ids[~out.masking], out.sampled_ids[~out.masking])
    assert torch.all(out.ids[out.masking] == C)
    with pytest.raises(ValueError, match="step_index"):
        sched.step(logits, 3, ids)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"generator": -5}, "seed"),
        ({"generator": "abc"}, "generator"),
        ({"known_tokens": torch.zeros(B, N + 1, dtype=torch.long)}, "known_tokens"),
        ({"known_tokens": torch.full((B, N), C + 1)}, "known_tokens"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(**kwargs)


def test_bad_scheduler_arguments_and_logits_shape():
    with pytest.raises(ValueError, match="temperature_decay"):
        MaskGITScheduler(4, temperature_decay="cosine")
    with pytest.raises(ValueError, match="schedule"):
        MaskGITScheduler(4, schedule="exp")
    with pytest.raises(ValueError, match="logits_fn returned"):
        maskgit_sample(lambda ids, cond: torch.zeros(B, N, C + 1), N, B, C, STEPS)
