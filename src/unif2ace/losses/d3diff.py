"""D3Diff (dual discrete diffusion) loss: masked CE + alpha * SEDD score entropy from one forward pass (spec §4).

``L_D3Diff = L_mask + alpha * L_score`` (UniF²ace, method figure; alpha = 0.01 best in Table 3):

* ``L_mask`` (§4.3) is Show-o's ``loss_t2i`` restricted to the codebook softmax: mean of ``-log p_theta(x_0^i | x_t)``
  over all masked positions of the batch.
* ``L_score`` (§4.4) is SEDD's absorbing score entropy with the score read off the same predictor (RADD identity,
  §4.5): ``log s_{i,y} = log_softmax(logits_i)_y + log r`` with ``r = (1 - m) / m`` ("exact"), or ``- log m``
  ("paper", the literal ``p_theta / q_t(x_t | x_0)``). Per sample: ``sum_{i masked} sigma'(tau) * l_i``, then the batch
  mean. Because ``sum_y p_theta(y) = 1``, ``l_i = -r log p_theta(x_0^i | x_t) + c(m)`` with ``c = 0`` (exact), so both
  variants have identical gradients and ``L_score`` is the continuous-time masked-diffusion ELBO with per-token
  weight ``sigma' * r = m'(tau) / m`` (cosine: ``(pi / 2) sqrt(1 - m^2) / m``).

Count-based masking vs the continuous-time weighting. Show-o's corruption (:func:`~unif2ace.losses.corruption.
mask_tokens`) masks exactly ``n = round(N m)`` uniformly chosen positions instead of masking each position
independently with probability ``m``. Conditioned on its count, the i.i.d. process also picks a uniform subset, and
its count ``Binomial(N, m)`` concentrates at ``N m``; so Show-o's process is the i.i.d. one with the count fixed at
its mean, and each position is still masked with marginal probability ``n / N ~ m``. The ELBO weight is a function
of time only, so we evaluate it at the row's **nominal** ratio ``m`` (not ``n / N``), clamped to ``[1/N, 1 - 1e-6]``:
``1/N`` mirrors the "at least one token" clamp of the count, and the upper bound keeps ``sigma = -log(1 - m)``
finite (at ``m = 1`` the weight ``sigma' r`` tends to 0 for the cosine schedule, but the explicit form is ``0 * inf``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from unif2ace.losses.schedules import CosineSchedule, MaskingNoise, Noise, get_mask_schedule
from unif2ace.losses.score_entropy import absorbing_score_entropy, ratio_from_sigma

__all__ = ["D3DiffLoss", "D3DiffOutput", "d3diff_row_noise", "weighted_ce_score"]

VARIANTS = ("exact", "paper")
MODES = ("d3diff", "mask_only", "score_only")


@dataclass
class D3DiffOutput:
    """Each D3Diff term separately, for logging.

    Attributes:
        loss: scalar objective (``mask_ce + alpha * score``; ``alpha * score`` with ``score_only``; ``mask_ce`` at 0).
        mask_ce: scalar mean CE over masked tokens.
        score: scalar batch mean of ``score_per_sample``.
        score_per_sample: ``(B,)`` ``sum_i sigma' * l_i`` per row.
    """

    loss: Tensor
    mask_ce: Tensor
    score: Tensor
    score_per_sample: Tensor


def d3diff_row_noise(mask_ratio: Tensor, num_tokens: int, noise: Noise, max_mask_ratio: float) -> tuple[Tensor, ...]:
    """Clamped mask ratio and ``(sigma, sigma')`` per row, computed in float64.

    Args:
        mask_ratio: ``(B,)`` nominal mask ratio of each row.
        num_tokens: ``N`` (lower clamp ``1 / N``).
        noise: the forward process giving ``sigma(m)`` and ``sigma'(m)``.
        max_mask_ratio: upper clamp (< 1).

    Returns:
        ``(m, sigma, dsigma)``, each ``(B,)`` float64.
    """
    m = mask_ratio.detach().double().clamp(min=1.0 / num_tokens, max=max_mask_ratio)
    return m, noise.sigma_from_mask_ratio(m), noise.rate_from_mask_ratio(m)


def weighted_ce_score(nll: Tensor, mask: Tensor, m: Tensor, sigma: Tensor, dsigma: Tensor, variant: str) -> Tensor:
    """Closed form of the D3Diff score term: ``sum_{i masked} sigma' * (r * nll_i + c(m))`` per row (spec §4.5).

    Args:
        nll: ``(B, N)`` ``-log p_theta(x_0^i | x_t)``.
        mask: ``(B, N)`` bool masked positions.
        m: ``(B,)`` row mask ratio.
        sigma: ``(B,)`` total noise at ``m``.
        dsigma: ``(B,)`` rate of noise at ``m``.
        variant: ``"exact"`` (``c = 0``) or ``"paper"`` (``c = 1/m + r log m + r (log r - 1)``).

    Returns:
        ``(B,)`` per-sample score term.
    """
    r = ratio_from_sigma(sigma)
    const = torch.zeros_like(m) if variant == "exact" else 1 / m + r * m.log() + r * (r.log() - 1)
    per_token = r.to(nll.dtype)[:, None] * nll + const.to(nll.dtype)[:, None]  # (B, N)
    return (dsigma.to(nll.dtype)[:, None] * per_token * mask.to(nll.dtype)).sum(dim=-1)


@dataclass(frozen=True)
class D3DiffLoss:
    """D3Diff on codebook logits (callable object; see the module docstring for the math).

    Attributes:
        alpha: weight of the score term (0 = Show-o mask-only loss).
        variant: ``"exact"`` (``log s = log p + log r``) or ``"paper"`` (``log s = log p - log m``).
        score_only: optimise only ``alpha * score`` (Table 3 "Only Score").
        explicit: compute the score term in SEDD's explicit pos/neg/const form (True) or in the equal closed
            form ``sigma' * r * nll + const`` (False; saves two ``(B, N, C)`` buffers at large codebooks).
        noise: forward process mapping the row mask ratio to ``(sigma, sigma')`` (default: Show-o cosine).
        max_mask_ratio: upper clamp of ``m`` for the score term.
    """

    alpha: float = 0.01
    variant: str = "exact"
    score_only: bool = False
    explicit: bool = True
    noise: Noise = field(default_factory=lambda: MaskingNoise(CosineSchedule()))
    max_mask_ratio: float = 1.0 - 1e-6

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise ValueError(f"D3Diff alpha must be >= 0, got {self.alpha}")
        if self.variant not in VARIANTS:
            raise ValueError(f"D3Diff variant must be one of {VARIANTS}, got {self.variant!r}")
        if not 0 < self.max_mask_ratio < 1:
            raise ValueError(f"D3Diff max_mask_ratio must be in (0, 1), got {self.max_mask_ratio}")

    @classmethod
    def from_mode(
        cls, mode: str = "d3diff", alpha: float = 0.01, variant: str = "exact", mask_schedule: str = "cosine"
    ) -> D3DiffLoss:
        """Build from the ``train.loss`` switches: mode ``"d3diff"``, ``"mask_only"`` (alpha -> 0) or ``"score_only"``.

        Raises:
            ValueError: unknown mode, variant or schedule.
        """
        if mode not in MODES:
            raise ValueError(f"D3Diff mode must be one of {MODES}, got {mode!r}")
        noise = MaskingNoise(get_mask_schedule(mask_schedule))
        alpha = 0.0 if mode == "mask_only" else alpha
        return cls(alpha=alpha, variant=variant, score_only=mode == "score_only", noise=noise)

    def __call__(
        self, logits: Tensor, x0: Tensor, mask: Tensor, mask_ratio: Tensor, position_weights: Tensor | None = None
    ) -> D3DiffOutput:
        """Compute both terms from one set of logits.

        Args:
            logits: ``(B, N, C)`` logits over the C image codes at the N image positions.
            x0: ``(B, N)`` clean codes in ``[0, C)``.
            mask: ``(B, N)`` bool, True where the input token was masked.
            mask_ratio: ``(B,)`` nominal mask ratio of each row (``MaskedTokens.mask_prob``).
            position_weights: optional ``(N,)`` weights of the positions in the masked CE, which becomes
                ``sum_i w_i nll_i / sum_i w_i`` over the masked tokens (our [INF] option; the score term, an ELBO,
                stays unweighted). None = uniform.

        Returns:
            A :class:`D3DiffOutput`.
        """
        if logits.dim() != 3 or logits.shape[:2] != x0.shape or x0.shape != mask.shape:
            raise ValueError(
                f"need logits (B, N, C), x0 and mask (B, N); got {tuple(logits.shape)}, "
                f"{tuple(x0.shape)}, {tuple(mask.shape)}"
            )
        batch, num, codebook = logits.shape
        logp = logits.float().log_softmax(dim=-1)  # (B, N, C), fp32 island
        nll = -logp.gather(-1, x0[..., None]).squeeze(-1)  # (B, N)
        mask_f = mask.to(nll.dtype)
        if position_weights is not None:
            mask_f = mask_f * position_weights.to(nll)[None]
        mask_ce = (nll * mask_f).sum() / mask_f.sum().clamp(min=1e-12)
        m, sigma, dsigma = d3diff_row_noise(mask_ratio, num, self.noise, self.max_mask_ratio)
        if self.explicit:
            per_sample = self._explicit(logp, x0, mask, m, sigma, dsigma, codebook)
        else:
            per_sample = weighted_ce_score(nll, mask, m, sigma, dsigma, self.variant)
        score = per_sample.mean()
        if self.score_only:
            loss = self.alpha * score
        elif self.alpha == 0:
            loss = mask_ce
        else:
            loss = mask_ce + self.alpha * score
        return D3DiffOutput(loss=loss, mask_ce=mask_ce, score=score, score_per_sample=per_sample)

    def _explicit(
        self, logp: Tensor, x0: Tensor, mask: Tensor, m: Tensor, sigma: Tensor, dsigma: Tensor, codebook: int
    ) -> Tensor:
        """``(B,)`` ``sum_i sigma' * (pos - neg + const)`` with ``log s = logp + shift`` (mask code = ``C``)."""
        sigma32 = sigma.to(logp.dtype)
        shift = ratio_from_sigma(sigma32).log() if self.variant == "exact" else -m.log().to(logp.dtype)  # (B,)
        log_score = logp + shift[:, None, None]  # (B, N, C)
        x_t = torch.where(mask, codebook, x0)
        entropy = absorbing_score_entropy(log_score, sigma32, x_t, x0, mask_id=codebook)  # (B, N)
        return (dsigma.to(logp.dtype)[:, None] * entropy).sum(dim=-1)
