"""The training objective of one micro-batch from one forward pass (spec §6: ``L = L_MMU + L_D3Diff + L_balance``).

T2I rows: logits at the image positions, restricted to the codebook slice, feed
:class:`~unif2ace.losses.d3diff.D3DiffLoss` (masked CE + alpha * score entropy, spec §4.5). MMU rows: shifted
next-token CE on answer tokens (:func:`~unif2ace.losses.text.next_token_ce`). Balance: the model's auxiliary loss
(already multiplied by its lambdas, spec §3.2).

Distributed normalisation: the masked-CE term is a mean over the masked tokens of the *global* micro-batch, the
score term a mean over its T2I rows, the MMU term a mean over its supervised tokens. Each process computes its
local mean and rescales it by ``local_count / global_count * world_size``; since DDP averages gradients over
processes, the result equals the single-process gradient of the whole micro-batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from unif2ace.config.train import Unif2aceConfig
from unif2ace.losses import D3DiffLoss, D3DiffOutput, LossBreakdown, LossWeights, combine_losses, next_token_ce
from unif2ace.losses.corruption import IGNORE_INDEX
from unif2ace.losses.schedules import MaskingNoise, get_mask_schedule
from unif2ace.training.batching import TrainBatch
from unif2ace.training.distributed import Runtime

__all__ = ["LossComputer"]


class LossComputer:
    """Callable ``(model_output, batch) -> LossBreakdown`` configured from ``train.loss``.

    Args:
        cfg: the full config (loss switches, vocabulary layout).
        runtime: process topology (for the global token counts).
    """

    def __init__(self, cfg: Unif2aceConfig, runtime: Runtime | None = None) -> None:
        lc = cfg.train.loss
        self.vocab = cfg.model.vocab
        self.runtime = runtime
        noise = MaskingNoise(get_mask_schedule(lc.mask_schedule))
        alpha = 0.0 if lc.mode == "mask_only" else lc.alpha
        # closed form of the score term: same value as SEDD's explicit form without two (B, N, C) buffers
        self.d3diff = D3DiffLoss(
            alpha=alpha, variant=lc.variant, score_only=lc.mode == "score_only", explicit=False, noise=noise
        )
        self.weights = LossWeights(t2i=lc.t2i_coef, mmu=lc.mmu_coef, lm=0.0, balance=1.0)

    def _global_scale(self, local: Tensor) -> Tensor:
        """``local / global * world`` for a count tensor (1 for a single process)."""
        if self.runtime is None or self.runtime.world_size == 1:
            return torch.ones((), device=local.device)
        total = self.runtime.all_sum(local.float())
        return local.float() / total.clamp(min=1) * self.runtime.world_size

    def t2i_terms(self, logits: Tensor, batch: TrainBatch) -> D3DiffOutput | None:
        """D3Diff of the T2I rows, with globally normalised terms (None without T2I rows)."""
        n = batch.num_t2i
        if n == 0:
            return None
        rows = logits[:n]  # (Bt, L, V)
        idx = batch.image_positions[..., None].expand(-1, -1, rows.shape[-1])  # (Bt, N, V)
        start = self.vocab.image_offset
        img_logits = rows.gather(1, idx)[..., start : start + self.vocab.codebook_size]  # (Bt, N, C)
        out = self.d3diff(img_logits, batch.image_x0, batch.image_masked, batch.mask_prob)
        mask_ce = out.mask_ce * self._global_scale(batch.image_masked.sum())
        score = out.score * self._global_scale(torch.tensor(float(n), device=logits.device))
        if self.d3diff.score_only:
            loss = self.d3diff.alpha * score
        elif self.d3diff.alpha == 0:
            loss = mask_ce
        else:
            loss = mask_ce + self.d3diff.alpha * score
        return D3DiffOutput(loss=loss, mask_ce=mask_ce, score=score, score_per_sample=out.score_per_sample)

    def mmu_term(self, logits: Tensor, batch: TrainBatch) -> Tensor | None:
        """Shifted CE on the MMU rows' supervised tokens, globally normalised (None without MMU rows)."""
        n = batch.num_t2i
        if n == batch.input_ids.shape[0]:
            return None
        labels = batch.labels[n:]
        ce = next_token_ce(logits[n:], labels)
        return ce * self._global_scale((labels[:, 1:] != IGNORE_INDEX).sum())

    def __call__(self, output: Any, batch: TrainBatch) -> LossBreakdown:
        """Every term of the objective for one micro-batch.

        Args:
            output: the model output (``logits`` ``(B, L, V)``, ``aux_loss`` scalar or None).
            batch: the micro-batch (T2I rows first).

        Returns:
            A :class:`~unif2ace.losses.total.LossBreakdown`; ``total`` is what to backpropagate.
        """
        logits = output.logits
        balance = {}
        aux = getattr(output, "aux_loss", None)
        if isinstance(aux, Tensor) and aux.requires_grad:
            balance["moe"] = aux.float()
        return combine_losses(
            self.weights, t2i=self.t2i_terms(logits, batch), mmu=self.mmu_term(logits, batch), balance=balance
        )
