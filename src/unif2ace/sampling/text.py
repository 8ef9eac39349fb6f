"""Batched autoregressive text decoding over a KV-cached step function (spec §2.7 ``mmu_generate``, §5).

The model is reached only through :class:`~unif2ace.sampling.interfaces.DecodeStepFn`: the prompt ``(B, T)`` is fed
once with ``cache=None``, then one ``(B, 1)`` token per step with the returned cache. Token choice: temperature 0 =
greedy argmax (no RNG); otherwise ``softmax(filter(logits / temperature))`` sampled with ``torch.multinomial``, where
the filter keeps the ``top_k`` largest logits and then the smallest set of tokens whose probability mass reaches
``top_p`` (nucleus sampling, Holtzman et al. 2019). A row that emits a stop id is finished: it is fed and emits
``pad_id`` afterwards. Decoding ends when every row is finished or after ``max_new_tokens`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from unif2ace.sampling.common import resolve_generator
from unif2ace.sampling.interfaces import DecodeStepFn

__all__ = ["TextDecodeOutput", "decode_text", "filter_logits", "select_next_token"]


@dataclass
class TextDecodeOutput:
    """Result of :func:`decode_text`.

    Attributes:
        ids: ``(B, S)`` generated ids (``S <= max_new_tokens``): text, then the stop id, then ``pad_id``.
        lengths: ``(B,)`` number of generated tokens before the stop id (``S`` if the row never stopped).
        finished: ``(B,)`` bool, True where a stop id was produced.
        cache: the step function's cache after the last call.
    """

    ids: Tensor
    lengths: Tensor
    finished: Tensor
    cache: Any = None


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set logits outside the top-k / top-p (nucleus) set to ``-inf``.

    Args:
        logits: ``(B, V)`` logits (already divided by the temperature).
        top_k: keep the ``k`` largest (ties at the k-th value are kept); None = no limit.
        top_p: keep the smallest prefix of the sorted distribution whose mass reaches ``top_p``; None or 1 = all.

    Returns:
        ``(B, V)`` filtered logits; the most likely token always survives.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        drop_sorted = mass_before >= top_p  # the first token has mass_before = 0 and stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def select_next_token(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(B,)`` next ids from ``(B, V)`` logits: argmax at temperature 0, else filtered multinomial."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _check_decode_args(prompt_ids: Tensor, max_new_tokens: int, temperature: float, top_k, top_p) -> None:
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] < 1:
        raise ValueError(f"prompt_ids must be (B, T) with T >= 1, got shape {tuple(prompt_ids.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")


@torch.no_grad()
def decode_text(
    step_fn: DecodeStepFn,
    prompt_ids: Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Iterable[int] = (),
    pad_id: int = 0,
    generator: torch.Generator | int | None = None,
    on_token: Callable[[Tensor], None] | None = None,
) -> TextDecodeOutput:
    """Decode up to ``max_new_tokens`` tokens for every row of ``prompt_ids``.

    Args:
        step_fn: ``fn(ids, cache) -> ((B, V) logits, cache)`` (the engine's KV-cached forward).
        prompt_ids: ``(B, T)`` prompt ids (layout and padding are the engine's business).
        max_new_tokens: maximum number of generated tokens per row.
        temperature: 0 = greedy; > 0 = sampling.
        top_k: optional top-k filter (sampling only).
        top_p: optional nucleus filter in ``(0, 1]`` (sampling only).
        stop_ids: ids that finish a row (e.g. ``<|endoftext|>``).
        pad_id: id emitted (and fed) by finished rows.
        generator: ``torch.Generator``, int seed or None (global RNG).
        on_token: optional ``fn(tokens)`` called with the ``(B,)`` ids of every step as soon as they are chosen
            (``pad_id`` for finished rows); used to stream text.

    Returns:
        A :class:`TextDecodeOutput`.

    Raises:
        ValueError: bad arguments (one line naming the argument).
    """
    _check_decode_args(prompt_ids, max_new_tokens, temperature, top_k, top_p)
    gen = resolve_generator(generator, prompt_ids.device)
    stop = torch.tensor(sorted(set(int(s) for s in stop_ids)), dtype=torch.long, device=prompt_ids.device)
    batch = prompt_ids.shape[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt_ids.device)
    lengths = torch.zeros(batch, dtype=torch.long, device=prompt_ids.device)
    logits, cache = step_fn(prompt_ids, None)
    out: list[Tensor] = []
    for i in range(max_new_tokens):
        if logits.dim() != 2 or logits.shape[0] != batch:
            raise ValueError(f"step_fn returned logits of shape {tuple(logits.shape)}, expected ({batch}, V)")
        token = select_next_token(logits, temperature, top_k, top_p, gen)
        token = torch.where(finished, pad_id, token)  # (B,)
        out.append(token)
        if on_token is not None:
            on_token(token)
        is_stop = torch.isin(token, stop) & ~finished
        lengths += (~finished & ~is_stop).long()
        finished |= is_stop
        if i == max_new_tokens - 1 or bool(finished.all()):
            break
        logits, cache = step_fn(token[:, None], cache)
    return TextDecodeOutput(ids=torch.stack(out, dim=1), lengths=lengths, finished=finished, cache=cache)
