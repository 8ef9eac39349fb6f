"""Batched text decoding against a mock KV-cached step function."""

from __future__ import annotations

import pytest
import torch
from sampling_mocks import MockDecoder

from unif2ace.sampling import decode_text, filter_logits

V = 12


def greedy_reference(model: MockDecoder, prompt: torch.Tensor, steps: int) -> list[int]:
    """Full-recompute reference for one row: argmax of the table at (last token, length)."""
    seq = prompt.tolist()
    for _ in range(steps):
        seq.append(int(model.table[seq[-1], len(seq) % 64].argmax()))
    return seq[len(prompt) :]


def test_greedy_picks_argmax():
    model = MockDecoder(V)
    prompts = torch.randint(0, V, (3, 5), generator=torch.Generator().manual_seed(1))
    out = decode_text(model, prompts, max_new_tokens=10)
    for row in range(3):
        assert out.ids[row].tolist() == greedy_reference(model, prompts[row], 10)
    assert out.lengths.tolist() == [10, 10, 10] and not out.finished.any()
    assert model.calls == 10  # prompt + 9 single-token steps


def test_stop_tokens_stop_rows_and_pad():
    model = MockDecoder(V)
    prompts = torch.randint(0, V, (4, 3), generator=torch.Generator().manual_seed(2))
    free = decode_text(model, prompts, max_new_tokens=12)
    stop = int(free.ids[0, 2])  # row 0 emits it at step 2
    out = decode_text(model, prompts, max_new_tokens=12, stop_ids=[stop], pad_id=V - 1)
    for row in range(4):
        seq = free.ids[row].tolist()
        if stop in seq:
            cut = seq.index(stop)
            assert out.lengths[row] == cut and out.finished[row]
            assert out.ids[row, : cut + 1].tolist() == seq[: cut + 1]
            assert torch.all(out.ids[row, cut + 1 :] == V - 1)
        else:
            assert out.lengths[row] == out.ids.shape[1] and not out.finished[row]
    assert out.lengths[0] == 2


def test_early_exit_when_all_rows_stop():
    model = MockDecoder(V)
    prompt = torch.tensor([[1, 2, 3]])
    first = int(decode_text(model, prompt, max_new_tokens=1).ids[0, 0])
    model.calls = 0
    out = decode_text(model, prompt, max_new_tokens=20, stop_ids=[first])
    assert out.ids.shape == (1, 1) and model.calls == 1 and out.lengths.tolist() == [0]


def test_batched_equals_one_by_one():
    model = MockDecoder(V)
    prompts = torch.randint(0, V, (5, 4), generator=torch.Generator().manual_seed(3))
    stop = [3, 7]
    batched = decode_text(model, prompts, max_new_tokens=15, stop_ids=stop)
    for row in range(5):
        single = decode_text(model, prompts[row : row + 1], max_new_tokens=15, stop_ids=stop)
        n = int(single.lengths[0]) + int(single.finished[0])
        assert batched.ids[row, :n].tolist() == single.ids[0, :n].tolist()
        assert batched.lengths[row] == single.lengths[0] and batched.finished[row] == single.finished[0]


def test_top_k_one_equals_greedy_and_temperature_zero_ignores_rng():
    model = MockDecoder(V)
    prompts = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(4))
    greedy = decode_text(model, prompts, max_new_tokens=12)
    top1 = decode_text(model, prompts, max_new_tokens=12, temperature=1.3, top_k=1, generator=0)
    assert torch.equal(greedy.ids, top1.ids)
    tiny_p = decode_text(model, prompts, max_new_tokens=12, temperature=1.0, top_p=1e-6, generator=1)
    assert torch.equal(greedy.ids, tiny_p.ids)
    assert torch.equal(greedy.ids, decode_text(model, prompts, max_new_tokens=12, temperature=0.0, generator=9).ids)


def test_seeded_sampling_repeats():
    model = MockDecoder(V)
    prompts = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(5))
    kw = {"max_new_tokens": 16, "temperature": 1.0, "top_k": 6, "top_p": 0.9}
    a = decode_text(model, prompts, generator=11, **kw)
    assert torch.equal(a.ids, decode_text(model, prompts, generator=torch.Generator().manual_seed(11), **kw).ids)
    assert not torch.equal(a.ids, decode_text(model, prompts, generator=12, **kw).ids)


def test_filter_logits():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.75))
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()
    kept = torch.isfinite(filter_logits(logits, top_k=3, top_p=0.95))
    assert kept.tolist() == [[True, True, True, False], [False, True, True, True]]


def test_sampling_frequencies_follow_filtered_distribution():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).expand(4000, 4)
    calls = {"n": 0}

    def step_fn(ids, cache):
        calls["n"] += 1
        return logits, cache

    out = decode_text(step_fn, torch.zeros(4000, 1, dtype=torch.long), 1, temperature=1.0, top_k=2, generator=0)
    freq = torch.bincount(out.ids[:, 0], minlength=4).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.03, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"generator": -3}, "seed"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs.setdefault("max_new_tokens", 4)
    with pytest.raises(ValueError, match=match):
        decode_text(MockDecoder(V), torch.zeros(2, 3, dtype=torch.long), **kwargs)
    with pytest.raises(ValueError, match="prompt_ids"):
        decode_text(MockDecoder(V), torch.zeros(3, dtype=torch.long), 4)


def test_on_token_streams_every_step_in_order():
    model = MockDecoder(V)
    prompts = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(5))
    seen = []
    out = decode_text(model, prompts, max_new_tokens=6, on_token=lambda t: seen.append(t.clone()))
    assert torch.equal(torch.stack(seen, dim=1), out.ids)
    stop = int(out.ids[1, 2])
    seen.clear()
    stopped = decode_text(model, prompts, max_new_tokens=6, stop_ids=[stop], pad_id=V - 1, on_token=seen.append)
    assert torch.equal(torch.stack(seen, dim=1), stopped.ids)  # finished rows stream pad ids, like the output
