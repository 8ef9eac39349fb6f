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
from unif2ace.losses import D3DiffLoss, D3DiffOutput, LossBreakdown, LossWeights, combine_losses, token_ce_mean
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
        position_weights: optional ``(N,)`` masked-CE weights of the image positions
            (:attr:`~unif2ace.training.batching.BatchBuilder.position_weights`).
    """

    def __init__(
        self, cfg: Unif2aceConfig, runtime: Runtime | None = None, position_weights: Tensor | None = None
    ) -> None:
        lc = cfg.train.loss
        self.vocab = cfg.model.vocab
        self.runtime = runtime
        self.position_weights = position_weights
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

    def split_logits(self, logits: Tensor, batch: TrainBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Image logits of the T2I rows and next-token logits / targets of the MMU rows.

        Args:
            logits: ``(B, L, V)`` full logits, or ``(M, V)`` logits at ``batch.logit_mask`` (row-major: the N image
                positions of each T2I row, then each MMU position whose next token is supervised).
            batch: the micro-batch.

        Returns:
            ``(Bt, N, V)`` image-position logits, ``(K, V)`` MMU logits and their ``(K,)`` next-token targets.
        """
        n = batch.num_t2i
        targets = batch.labels[n:, 1:][batch.logit_mask[n:, :-1]]  # (K,)
        if logits.dim() == 3:
            idx = batch.image_positions[..., None].expand(-1, -1, logits.shape[-1])  # (Bt, N, V)
            return logits[:n].gather(1, idx), logits[n:][batch.logit_mask[n:]], targets
        n_img = n * batch.image_positions.shape[1]
        image = logits[:n_img].view(n, batch.image_positions.shape[1], logits.shape[-1])  # (Bt, N, V)
        return image, logits[n_img:], targets

    def t2i_terms(self, image_logits: Tensor, batch: TrainBatch) -> D3DiffOutput | None:
        """D3Diff of the T2I rows from their ``(Bt, N, V)`` image logits, globally normalised (None without rows)."""
        n = batch.num_t2i
        if n == 0:
            return None
        start = self.vocab.image_offset
        img_logits = image_logits[..., start : start + self.vocab.codebook_size]  # (Bt, N, C)
        w = self.position_weights
        out = self.d3diff(img_logits, batch.image_x0, batch.image_masked, batch.mask_prob, position_weights=w)
        masked = batch.image_masked.sum() if w is None else (batch.image_masked * w.to(img_logits.device)).sum()
        mask_ce = out.mask_ce * self._global_scale(masked)
        score = out.score * self._global_scale(torch.tensor(float(n), device=image_logits.device))
        if self.d3diff.score_only:
            loss = self.d3diff.alpha * score
        elif self.d3diff.alpha == 0:
            loss = mask_ce
        else:
            loss = mask_ce + self.d3diff.alpha * score
        return D3DiffOutput(loss=loss, mask_ce=mask_ce, score=score, score_per_sample=out.score_per_sample)

    def mmu_term(self, logits: Tensor, targets: Tensor, batch: TrainBatch) -> Tensor | None:
        """Next-token CE of the MMU rows (``(K, V)`` logits, ``(K,)`` targets), globally normalised."""
        if batch.num_t2i == batch.input_ids.shape[0]:
            return None
        ce = token_ce_mean(logits, targets)  # = next_token_ce over the MMU rows
        return ce * self._global_scale((targets != IGNORE_INDEX).sum())

    def __call__(self, output: Any, batch: TrainBatch) -> LossBreakdown:
        """Every term of the objective for one micro-batch.

        Args:
            output: the model output: ``logits`` ``(B, L, V)`` or ``(M, V)`` at ``batch.logit_mask`` (see
                :meth:`split_logits`), ``aux_loss`` scalar.
            batch: the micro-batch (T2I rows first).

        Returns:
            A :class:`~unif2ace.losses.total.LossBreakdown`; ``total`` is what to backpropagate.
        """
        image_logits, mmu_logits, targets = self.split_logits(output.logits, batch)
        balance = {}
        aux = getattr(output, "aux_loss", None)
        if isinstance(aux, Tensor) and aux.requires_grad:
            balance["moe"] = aux.float()
        return combine_losses(
            self.weights,
            t2i=self.t2i_terms(image_logits, batch),
            mmu=self.mmu_term(mmu_logits, targets, batch),
            balance=balance,
        )
