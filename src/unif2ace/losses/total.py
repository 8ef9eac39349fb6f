"""Total training objective with every term kept separately (spec §6, §2.6).

``L = w_t2i * L_D3Diff + w_mmu * L_MMU + w_lm * L_LM + w_balance * sum_k L_balance,k``

``L_D3Diff`` comes from :class:`~unif2ace.losses.d3diff.D3DiffLoss`, ``L_MMU`` / ``L_LM`` from
:func:`~unif2ace.losses.text.next_token_ce`, and the balance terms are the MoE auxiliary losses the model returns
(already multiplied by their own lambda, spec §3.2). Show-o's stage-1 weights are t2i 1.0, lm 0.1, mmu 1.0;
UniF²ace uses ``L_MMU + L_D3Diff`` plus the balance terms (no LM flow by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from unif2ace.losses.d3diff import D3DiffOutput

__all__ = ["LossBreakdown", "LossWeights", "combine_losses"]


@dataclass(frozen=True)
class LossWeights:
    """Coefficients of the total objective."""

    t2i: float = 1.0
    """Weight of the text-to-image (D3Diff) loss."""
    mmu: float = 1.0
    """Weight of the understanding (shifted CE on answer tokens) loss."""
    lm: float = 0.0
    """Weight of the optional text-only LM loss (Show-o: 0.1; UniF²ace: none)."""
    balance: float = 1.0
    """Multiplier on the MoE balance losses (their lambda is applied by the model)."""

    def __post_init__(self) -> None:
        for name in ("t2i", "mmu", "lm", "balance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")


@dataclass
class LossBreakdown:
    """The total loss and each of its terms (``None`` = term absent from this batch).

    Attributes:
        total: scalar objective to backpropagate.
        t2i: D3Diff loss (``mask_ce + alpha * score``).
        t2i_mask_ce: its masked-CE term.
        t2i_score: its score-entropy term (unweighted by alpha).
        mmu: understanding CE.
        lm: text LM CE.
        balance: name -> MoE balance loss.
    """

    total: Tensor
    t2i: Tensor | None = None
    t2i_mask_ce: Tensor | None = None
    t2i_score: Tensor | None = None
    mmu: Tensor | None = None
    lm: Tensor | None = None
    balance: dict[str, Tensor] = field(default_factory=dict)

    def to_log_dict(self, prefix: str = "loss/") -> dict[str, float]:
        """Detached floats of every present term, e.g. ``{"loss/total": 5.8, "loss/t2i_score": 240.1, ...}``."""
        out = {f"{prefix}total": float(self.total.detach())}
        for name in ("t2i", "t2i_mask_ce", "t2i_score", "mmu", "lm"):
            value = getattr(self, name)
            if value is not None:
                out[f"{prefix}{name}"] = float(value.detach())
        for name, value in self.balance.items():
            out[f"{prefix}balance/{name}"] = float(value.detach())
        return out


def combine_losses(
    weights: LossWeights,
    t2i: D3DiffOutput | None = None,
    mmu: Tensor | None = None,
    lm: Tensor | None = None,
    balance: Mapping[str, Tensor] | None = None,
) -> LossBreakdown:
    """Weighted sum of the present terms.

    Args:
        weights: the coefficients.
        t2i: D3Diff output of the T2I rows (None if the batch has none).
        mmu: scalar understanding loss.
        lm: scalar LM loss.
        balance: MoE balance losses by name (scalars).

    Returns:
        A :class:`LossBreakdown`.

    Raises:
        ValueError: no term is present.
    """
    balance = dict(balance or {})
    terms: list[Tensor] = []
    if t2i is not None and weights.t2i > 0:
        terms.append(weights.t2i * t2i.loss)
    if mmu is not None and weights.mmu > 0:
        terms.append(weights.mmu * mmu)
    if lm is not None and weights.lm > 0:
        terms.append(weights.lm * lm)
    if weights.balance > 0:
        terms.extend(weights.balance * value for value in balance.values())
    if not terms:
        raise ValueError("combine_losses got no term with a positive weight; pass t2i, mmu, lm or balance losses")
    total = torch.stack([term.float() for term in terms]).sum()
    return LossBreakdown(
        total=total,
        t2i=None if t2i is None else t2i.loss,
        t2i_mask_ce=None if t2i is None else t2i.mask_ce,
        t2i_score=None if t2i is None else t2i.score,
        mmu=mmu,
        lm=lm,
        balance=balance,
    )
