r"""SEDD score entropy for the absorbing graph, and the reverse-process helpers (spec §4.4).

SEDD (Lou et al., arXiv 2310.16834) learns the concrete score ``s(x_t)_{i,y} ~ p_t(x_t^{i <- y}) / p_t(x_t)``.
For the absorbing graph only masked positions contribute; with ``r = 1 / (e^sigma - 1) = (1 - m) / m`` (the true
ratio ``p_t(x_0^i) / p_t(MASK)``) the denoising score entropy of one masked position is (``graph_lib.Absorbing``)::

    l_i = sum_{y != MASK} exp(log_s_{i,y})  -  r * log_s_{i, x_0^i}  +  r * (log r - 1)
          \_____ pos ____________________/    \_____ neg ________/    \__ const ___/

and the per-sample loss is ``sum_i sigma'(t) * l_i`` (``losses.get_loss_fn``). Each position's term is a sum of
Bregman brackets ``s - a log s + a (log a - 1) >= 0`` (zero at ``s = a``): :func:`dse_bracket`.

:func:`staggered_score`, :func:`transp_transition` and :func:`reverse_rate` follow ``graph_lib.Absorbing`` (the
absorbing state is the **last** column there) and serve the analytic / Euler reverse updates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "absorbing_score_entropy",
    "dse_bracket",
    "ratio_from_sigma",
    "reverse_rate",
    "score_entropy_loss",
    "staggered_score",
    "transp_transition",
]


def ratio_from_sigma(sigma: Tensor) -> Tensor:
    """``r = 1 / (e^sigma - 1)``, with ``expm1`` below ``sigma = 0.5`` exactly as SEDD computes it."""
    esigm1 = torch.where(sigma < 0.5, torch.expm1(sigma), torch.exp(sigma) - 1)
    return 1 / esigm1


def _as_column(value: Tensor) -> Tensor:
    """``(B,)`` -> ``(B, 1)``; ``(B, 1)`` unchanged."""
    return value[:, None] if value.dim() == 1 else value


def absorbing_score_entropy(log_score: Tensor, sigma: Tensor, x_t: Tensor, x0: Tensor, mask_id: int) -> Tensor:
    """Per-position absorbing score entropy (SEDD ``Absorbing.score_entropy``), zero at unmasked positions.

    Args:
        log_score: ``(B, L, K)`` log concrete score; column ``mask_id`` (if ``< K``) is excluded from ``pos``.
        sigma: total noise ``(B,)`` or ``(B, 1)``.
        x_t: ``(B, L)`` noisy ids; positions equal to ``mask_id`` contribute.
        x0: ``(B, L)`` clean ids in ``[0, K)``, never ``mask_id``.
        mask_id: absorbing id (``K - 1`` in SEDD; ``>= K`` when ``log_score`` only covers clean tokens).

    Returns:
        ``(B, L)`` entropy ``pos - neg + const`` at masked positions, 0 elsewhere.
    """
    ratio = ratio_from_sigma(_as_column(sigma)).to(log_score.dtype)  # (B, 1)
    masked = x_t == mask_id  # (B, L)
    neg = ratio * log_score.gather(-1, x0[..., None]).squeeze(-1)  # (B, L)
    exp_score = log_score.exp()  # (B, L, K)
    if mask_id < log_score.shape[-1]:  # drop the absorbing column (SEDD: the last one)
        exp_score = torch.cat([exp_score[..., :mask_id], exp_score[..., mask_id + 1 :]], dim=-1)
    pos = exp_score.sum(dim=-1)  # (B, L)
    const = ratio * (ratio.log() - 1)  # (B, 1)
    return torch.where(masked, pos - neg + const, torch.zeros((), dtype=log_score.dtype, device=log_score.device))


def score_entropy_loss(
    log_score: Tensor, sigma: Tensor, dsigma: Tensor, x_t: Tensor, x0: Tensor, mask_id: int
) -> Tensor:
    """SEDD per-sample loss ``sum_l sigma'(t) * score_entropy[b, l]`` (``losses.get_loss_fn``).

    Args:
        log_score: ``(B, L, K)`` log concrete score.
        sigma: ``(B,)`` total noise.
        dsigma: ``(B,)`` rate of noise ``sigma'(t)``.
        x_t: ``(B, L)`` noisy ids.
        x0: ``(B, L)`` clean ids.
        mask_id: absorbing id.

    Returns:
        ``(B,)`` per-sample loss (SEDD averages it over the batch in the train step).
    """
    entropy = absorbing_score_entropy(log_score, sigma, x_t, x0, mask_id)
    return (_as_column(dsigma) * entropy).sum(dim=-1)


def dse_bracket(score: Tensor, target: Tensor) -> Tensor:
    """Denoising score-entropy bracket ``s - a log s + a (log a - 1)`` (``>= 0``, ``= 0`` iff ``s = a``), elementwise.

    Args:
        score: positive model score ``s``.
        target: positive true ratio ``a``.
    """
    return score - target * score.log() + target * (target.log() - 1)


def staggered_score(score: Tensor, dsigma: Tensor) -> Tensor:
    """``p_{sigma - dsigma}(z) / p_sigma(x)`` approximated by ``exp(-dsigma E) score`` (absorbing = last column).

    Args:
        score: ``(B, L, D)`` concrete score (not log).
        dsigma: ``(B, 1)`` noise decrement.

    Returns:
        ``(B, L, D)``: ``score * e^dsigma`` with ``(1 - e^dsigma) * sum_j score_j`` added to the last column.
    """
    extra = (1 - dsigma.exp()) * score.sum(dim=-1)  # (B, L)
    out = score * dsigma.exp()[:, None]  # (B, L, D)
    last = out[..., -1] + extra
    return torch.cat([out[..., :-1], last[..., None]], dim=-1)


def transp_transition(x: Tensor, sigma: Tensor, dim: int) -> Tensor:
    """Row ``x`` of ``exp(sigma Q)^T`` for the absorbing graph with ``dim`` states (absorbing = ``dim - 1``).

    Args:
        x: ``(B, L)`` ids.
        sigma: ``(B, 1)`` (or ``(B,)``) noise level.
        dim: number of states including the absorbing one.

    Returns:
        ``(B, L, dim)``: ``e^{-sigma} onehot(x)``, plus ``1 - e^{-sigma}`` on every column where ``x`` is absorbing.
    """
    sigma = _as_column(sigma)  # (B, 1)
    edge = (-sigma).exp()[..., None] * F.one_hot(x, num_classes=dim)  # (B, L, dim)
    extra = torch.where(x == dim - 1, 1 - (-sigma).exp(), 0)  # (B, L)
    return edge + extra[..., None]


def reverse_rate(x: Tensor, score: Tensor) -> Tensor:
    """Reverse rate ``Q^T[x] * score`` with the diagonal set to minus the off-diagonal row sum (absorbing graph).

    Args:
        x: ``(B, L)`` current ids (absorbing = ``D - 1``).
        score: ``(B, L, D)`` concrete score.

    Returns:
        ``(B, L, D)`` reverse rate.
    """
    dim = score.shape[-1]
    onehot = F.one_hot(x, num_classes=dim).to(score.dtype)  # (B, L, D)
    transp_rate = (x == dim - 1).to(score.dtype)[..., None] - onehot  # row x of Q^T
    rate = transp_rate * score * (1 - onehot)
    return rate - onehot * rate.sum(dim=-1, keepdim=True)
