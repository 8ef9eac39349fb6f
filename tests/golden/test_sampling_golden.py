"""Show-o ``models/sampling.py`` schedules, ``mask_by_random_topk`` and ``t2i_generate`` (fixtures showo_sampling.*)."""

from __future__ import annotations

import pytest
import torch

from unif2ace.losses import get_mask_schedule
from unif2ace.sampling import MaskGITScheduler, gumbel_noise, mask_by_random_topk, maskgit_sample

pytestmark = pytest.mark.golden

N, C, STEPS, B = 16, 64, 4, 2
IMAGE_OFFSET, MASK_ID = 310, 374
RUNS = [(0.0, 1434), (1.5, 1435)]


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    from unif2ace.utils.io import load_tensors, read_json

    return load_tensors(fixtures_dir / "showo_sampling.safetensors"), read_json(fixtures_dir / "showo_sampling.json")


@pytest.mark.parametrize("name", ["cosine", "linear", "pow0.5", "pow2", "pow3", "sigmoid"])
def test_schedules(ref, name):
    t, _ = ref
    values = get_mask_schedule(name)(t["schedule.ratios"])
    torch.testing.assert_close(values, t[f"schedule.{name}"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", [0, 1, 2])
def test_mask_by_random_topk(ref, case):
    t, meta = ref
    spec = meta["mask_by_random_topk_cases"][case]
    noise = gumbel_noise(t["mbrt.probs"], torch.Generator().manual_seed(spec["generator_seed"]))
    # same uniforms; torch.log may differ by 1 ulp between CPUs (seen: fixture machine vs AMD EPYC, <= 2.4e-7)
    torch.testing.assert_close(noise, t[f"mbrt.case{case}.gumbel_noise"], rtol=0, atol=3e-7)
    gen = torch.Generator().manual_seed(spec["generator_seed"])
    masking = mask_by_random_topk(t["mbrt.mask_len"], t["mbrt.probs"], spec["temperature"], generator=gen)
    assert torch.equal(masking, t[f"mbrt.case{case}.masking"])
    given = mask_by_random_topk(t["mbrt.mask_len"], t["mbrt.probs"], spec["temperature"], noise=noise)
    assert torch.equal(given, masking)


def replay(logits_steps: torch.Tensor, calls: list[bool]):
    """Mock ImageLogitsFn replaying upstream's per-step model logits (rows: cond, then uncond)."""

    def fn(ids: torch.Tensor, cond: bool) -> torch.Tensor:
        step = sum(calls) - (0 if cond else 1)
        calls.append(cond)
        rows = logits_steps[step]
        return rows[:B] if cond else rows[B:]

    return fn


@pytest.mark.parametrize(("gs", "seed"), RUNS)
def test_t2i_generate_bit_exact(ref, gs, seed):
    t, _ = ref
    calls: list[bool] = []
    fn = replay(t[f"gen.gs{gs}.step_model_logits_img_codebook"], calls)
    out = maskgit_sample(fn, N, B, C, STEPS, guidance_scale=gs, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out, t[f"gen.gs{gs}.output_sampled_ids"])
    assert calls == ([True] * STEPS if gs == 0 else [True, False] * STEPS)


@pytest.mark.parametrize(("gs", "seed"), RUNS)
def test_t2i_generate_steps_with_seed(ref, gs, seed):
    """Every per-step intermediate equals upstream when drawing from the same generator."""
    t, meta = ref
    p = f"gen.gs{gs}."
    scheduler = MaskGITScheduler(STEPS, "cosine", temperature=1.0)
    assert scheduler.temperatures == meta["t2i_generate_runs"][RUNS.index((gs, seed))]["temperature_used_per_step"]
    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((B, N), C)
    for k in range(STEPS):
        rows = t[p + "step_model_logits_img_codebook"][k]
        logits = rows[:B] if gs == 0 else (1 + gs) * rows[:B] - gs * rows[B:]
        noise_state = gen.get_state()
        out = scheduler.step(logits, k, ids, gen)
        replay_gen = torch.Generator().set_state(noise_state)
        torch.multinomial(logits.softmax(-1).reshape(-1, C), 1, generator=replay_gen)  # skip the token draw
        noise = gumbel_noise(out.selected_probs, replay_gen)
        torch.testing.assert_close(noise, t[p + "step_gumbel_noise"][k], rtol=0, atol=3e-7)
        assert torch.equal(out.sampled_ids, torch.where(ids == C, t[p + "step_sampled_ids"][k], ids))
        assert torch.equal(out.selected_probs, t[p + "step_selected_probs"][k])
        assert torch.equal(out.mask_len, t[p + "step_mask_len"][k])
        assert torch.equal(out.masking, t[p + "step_masking"][k])
        ids = out.ids


@pytest.mark.parametrize(("gs", "seed"), RUNS)
def test_t2i_generate_deterministic_parts(ref, gs, seed):
    """Given the stored draws and noise, the deterministic parts match; final state keeps one mask (quirk)."""
    t, _ = ref
    p = f"gen.gs{gs}."
    scheduler = MaskGITScheduler(STEPS)
    ids = torch.full((B, N), C)
    for k in range(STEPS):
        rows = t[p + "step_model_logits_img_codebook"][k]
        logits = rows[:B] if gs == 0 else (1 + gs) * rows[:B] - gs * rows[B:]
        probs = logits.softmax(dim=-1)
        out = scheduler.remask(probs, t[p + "step_sampled_ids"][k], k, ids, noise=t[p + "step_gumbel_noise"][k])
        torch.testing.assert_close(out.selected_probs, t[p + "step_selected_probs"][k], rtol=1e-5, atol=0)
        assert torch.equal(out.mask_len, t[p + "step_mask_len"][k])
        assert torch.equal(out.masking, t[p + "step_masking"][k])
        ids = out.ids
    assert torch.equal(out.sampled_ids, t[p + "output_sampled_ids"])
    upstream_image = t[p + "final_input_ids"][:, -(N + 1) : -1]
    assert torch.equal(torch.where(ids == C, MASK_ID, ids + IMAGE_OFFSET), upstream_image)
    assert int((ids == C).sum()) == B  # one position per row left masked by the mask_len clamp
