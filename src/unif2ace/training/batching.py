"""Mixed T2I + MMU micro-batches from records and pre-computed image tokens (spec §2.4, §2.6, §5, §6).

Each global micro-batch holds ``t2i_per_batch`` generation rows followed by ``mmu_per_batch`` understanding rows
(Show-o order); process ``r`` of ``W`` builds rows ``r/W .. (r+1)/W`` of each kind. Row ``j`` of a kind is the
sample at global position ``p + j`` of that kind's :class:`~unif2ace.data.dataset.EpochOrder`, and every random
choice for it (CFG dropout, mask ratio and positions, captioning vs VQA, which QA turns) comes from a generator
seeded by ``(seed, kind, position)``, so batches do not depend on the number of processes or on resumption.

* T2I: caption -> text ids (replaced by the empty prompt with probability ``cond_dropout_prob``), image codes
  masked with Show-o's count-based corruption (:func:`~unif2ace.losses.corruption.mask_tokens`).
* MMU: clean image codes + either the captioning question with the caption as answer, or up to
  ``vqa_max_turns`` VQA pairs as a multi-turn conversation; only answer tokens are supervised.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from unif2ace.config.model import GEN, UND
from unif2ace.config.train import Unif2aceConfig
from unif2ace.data.dataset import (
    EpochOrder,
    FaceSample,
    TokenRecordDataset,
    attribute_position_weights,
    balance_repeats,
    sample_seed,
)
from unif2ace.losses.corruption import IGNORE_INDEX, mask_tokens
from unif2ace.losses.schedules import get_mask_schedule
from unif2ace.model.interfaces import RoutingContext
from unif2ace.training.layouts import Layout, Layouts

__all__ = ["BatchBuilder", "TrainBatch", "batch_loader"]


@dataclass
class TrainBatch:
    """One process's micro-batch: T2I rows first, then MMU rows, all of length ``L``.

    Attributes:
        input_ids: ``(B, L)`` ids (T2I image tokens partially replaced by the mask id).
        labels: ``(B, L)`` MMU answer ids (``-100`` elsewhere; T2I rows all ``-100``).
        attention_mask: ``(B, 1, L, L)`` bool, True = query may attend to key (omni-attention).
        position_ids: ``(B, L)`` positions.
        group_ids: ``(B,)`` task group (1 = gen / T2I, 0 = und / MMU).
        valid: ``(B, L)`` bool, real (non-pad) tokens.
        image_mask: ``(B, L)`` bool, image-token positions.
        pool_mask: ``(B, L)`` bool, condition positions pooled by the sequence router.
        image_positions: ``(Bt, N)`` long, image-token positions of the T2I rows.
        image_x0: ``(Bt, N)`` long, clean codes of the T2I rows.
        image_masked: ``(Bt, N)`` bool, masked image tokens.
        mask_prob: ``(Bt,)`` nominal mask ratio per T2I row.
        features: name -> ``(B, T, E)`` encoder features for the sequence-MoE experts.
        num_t2i: number of T2I rows ``Bt``.
        logit_mask: ``(B, L)`` bool, positions whose logits the loss reads (T2I: image positions; MMU: positions
            whose next token is supervised); passed to the model as ``logits_positions``.
    """

    input_ids: Tensor
    labels: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    group_ids: Tensor
    valid: Tensor
    image_mask: Tensor
    pool_mask: Tensor
    image_positions: Tensor
    image_x0: Tensor
    image_masked: Tensor
    mask_prob: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)
    num_t2i: int = 0
    logit_mask: Tensor | None = None

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.input_ids.device

    def to(self, device: torch.device | str) -> TrainBatch:
        """A copy on ``device``."""
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = value.to(device, non_blocking=True)
            elif isinstance(value, dict):
                value = {k: v.to(device, non_blocking=True) for k, v in value.items()}
            moved[f.name] = value
        return TrainBatch(**moved)

    def routing_context(self, generator: torch.Generator | None = None) -> RoutingContext:
        """The :class:`RoutingContext` the grouped MoEs read."""
        return RoutingContext(
            group_ids=self.group_ids,
            valid=self.valid,
            image_mask=self.image_mask,
            pool_mask=self.pool_mask,
            features=dict(self.features),
            generator=generator,
        )


class BatchBuilder:
    """Builds :class:`TrainBatch` es at given stream positions.

    Args:
        cfg: the full config (data, vocabulary, loss schedule, seed).
        dataset: joined records + tokens.
        layouts: the Show-o sequence layouts (text tokenizer + id layout + masks).
        feature_dims: encoder features the model expects, name -> width.
        feature_caches: precomputed features by kind (:class:`~unif2ace.model.encoders.FeatureCache`); a kind
            without a cache, or an image missing from it, gets zeros, which the sequence MoE treats as missing
            (that expert copies the row, spec §3.3).
    """

    def __init__(
        self,
        cfg: Unif2aceConfig,
        dataset: TokenRecordDataset,
        layouts: Layouts,
        feature_dims: dict[str, int] | None = None,
        feature_caches: dict[str, Any] | None = None,
    ) -> None:
        self.cfg, self.dataset, self.layouts = cfg, dataset, layouts
        self.seed = cfg.train.seed
        self.schedule = get_mask_schedule(cfg.train.loss.mask_schedule)
        balance = cfg.data.t2i_balance
        repeats = balance_repeats(dataset.records, balance, cfg.data.t2i_balance_max_repeat) if balance else None
        self.orders = {
            "t2i": EpochOrder(len(dataset), self.seed, "t2i", repeats=repeats),
            "mmu": EpochOrder(len(dataset), self.seed, "mmu"),
        }
        self.feature_dims = dict(feature_dims or {})
        self.feature_caches = dict(feature_caches or {})
        self.code_mask = (1 << cfg.data.code_bits) - 1 if cfg.data.code_bits else None
        self.position_weights: Tensor | None = None
        """``(N,)`` masked-CE weights of the image positions (``train.loss.position_weight_attributes``), or None."""
        lc = cfg.train.loss
        if lc.position_weight_attributes:
            codes = torch.stack([self._codes(dataset.tokens.codes(image)) for image in dataset.images])  # (R, N)
            self.position_weights = attribute_position_weights(
                dataset.records, codes, lc.position_weight_attributes, lc.position_weight_strength
            )

    def _codes(self, codes: Tensor) -> Tensor:
        """The image codes the model trains on: all bits, or the low ``data.code_bits`` (a coarser quantiser)."""
        return codes if self.code_mask is None else codes & self.code_mask

    def model_sample(self, sample: FaceSample) -> FaceSample:
        """``sample`` with the codes the model sees (``data.code_bits``)."""
        return sample if self.code_mask is None else replace(sample, codes=self._codes(sample.codes))

    def noise_generator(self, micro_index: int, rank: int, device: torch.device) -> torch.Generator:
        """Generator for the noise expert of micro-batch ``micro_index`` on process ``rank``."""
        return torch.Generator(device=device).manual_seed(sample_seed(self.seed, "noise", micro_index, rank))

    def _t2i_row(self, sample: FaceSample, position: int) -> tuple[Layout, dict[str, Tensor]]:
        gen = torch.Generator().manual_seed(sample_seed(self.seed, "t2i", position))
        drop = float(torch.rand((), generator=gen)) < self.cfg.data.cond_dropout_prob
        layout = self.layouts.t2i("" if drop else sample.caption, sample.codes)
        corrupted = mask_tokens(
            layout.input_ids[layout.image_mask][None],
            self.layouts.vocab.mask_id,
            self.schedule,
            generator=gen,
            min_masking_rate=self.cfg.train.loss.min_masking_rate,
        )
        layout.input_ids[layout.image_mask] = corrupted.input_ids[0]
        extra = {"masked": corrupted.mask[0], "mask_prob": corrupted.mask_prob[0]}
        return layout, extra

    def _mmu_row(self, sample: FaceSample, position: int) -> Layout:
        gen = torch.Generator().manual_seed(sample_seed(self.seed, "mmu", position))
        caption = float(torch.rand((), generator=gen)) < self.cfg.data.caption_fraction or not sample.vqa
        if caption:
            turns = [(self.cfg.data.describe_prompt, sample.caption)]
        else:
            order = torch.randperm(len(sample.vqa), generator=gen).tolist()
            turns = [sample.vqa[i] for i in order[: self.cfg.data.vqa_max_turns]]
        return self.layouts.mmu(sample.codes, turns)

    def build(self, t2i_start: int, mmu_start: int, n_t2i: int, n_mmu: int) -> TrainBatch:
        """The rows at stream positions ``t2i_start .. +n_t2i`` and ``mmu_start .. +n_mmu``."""
        rows: list[Layout] = []
        samples: list[FaceSample] = []
        extras: list[dict[str, Tensor]] = []
        for j in range(n_t2i):
            sample = self.model_sample(self.dataset[self.orders["t2i"].index(t2i_start + j)])
            layout, extra = self._t2i_row(sample, t2i_start + j)
            rows.append(layout)
            samples.append(sample)
            extras.append(extra)
        for j in range(n_mmu):
            sample = self.model_sample(self.dataset[self.orders["mmu"].index(mmu_start + j)])
            rows.append(self._mmu_row(sample, mmu_start + j))
            samples.append(sample)
        return self._collate(rows, samples, extras, n_t2i)

    def _collate(
        self, rows: list[Layout], samples: list[FaceSample], extras: list[dict[str, Tensor]], n_t2i: int
    ) -> TrainBatch:
        stack = lambda name: torch.stack([getattr(r, name) for r in rows])  # noqa: E731
        input_ids = stack("input_ids")  # (B, L)
        image_mask = stack("image_mask")
        labels = stack("labels")
        logit_mask = torch.zeros_like(image_mask)
        logit_mask[:n_t2i] = image_mask[:n_t2i]
        logit_mask[n_t2i:, :-1] = labels[n_t2i:, 1:] != IGNORE_INDEX  # position p predicts token p + 1
        t2i_mask = image_mask[:n_t2i]
        n_img = self.cfg.data.num_image_tokens
        positions = t2i_mask.nonzero()[:, 1].view(n_t2i, n_img) if n_t2i else torch.zeros(0, n_img, dtype=torch.long)
        x0 = torch.stack([s.codes.long() for s in samples[:n_t2i]]) if n_t2i else torch.zeros(0, n_img).long()
        batch = TrainBatch(
            input_ids=input_ids,
            labels=labels,
            attention_mask=self.layouts.attention_mask(input_ids, image_mask, n_t2i),
            position_ids=torch.arange(input_ids.shape[1]).expand_as(input_ids).contiguous(),
            group_ids=torch.tensor([GEN] * n_t2i + [UND] * (len(rows) - n_t2i), dtype=torch.long),
            valid=stack("valid"),
            image_mask=image_mask,
            pool_mask=stack("pool_mask"),
            image_positions=positions,
            image_x0=x0,
            image_masked=torch.stack([e["masked"] for e in extras]) if n_t2i else torch.zeros(0, n_img).bool(),
            mask_prob=torch.stack([e["mask_prob"] for e in extras]) if n_t2i else torch.zeros(0),
            features=self._features(samples, n_t2i),
            num_t2i=n_t2i,
            logit_mask=logit_mask,
        )
        return trim_padding(batch) if self.cfg.data.trim_padding else batch

    def _features(self, samples: list[FaceSample], n_t2i: int) -> dict[str, Tensor]:
        """Features of the understanding rows' input faces; T2I rows get none (missing), as at generation time.

        The face a T2I row is trained to produce is its target: its features would leak it to the feature experts.
        """
        return self.features_for([None] * n_t2i + [s.id for s in samples[n_t2i:]])

    def features_for(self, image_ids: list[str | None]) -> dict[str, Tensor]:
        """Encoder features for the sequence-MoE experts, name -> ``(B, T, E)`` (zeros where missing)."""
        out = {}
        for name, dim in self.feature_dims.items():
            cache = self.feature_caches.get(name)
            if cache is not None and len(cache):
                out[name] = cache.lookup(image_ids)[0].float()
            else:
                out[name] = torch.zeros(len(image_ids), 1, dim)
        return out


def trim_padding(batch: TrainBatch) -> TrainBatch:
    """Right-align every row and drop the leading columns that are padding in all rows.

    T2I rows are left-padded already; MMU rows (right-padded) are rotated so that their trailing pads come first.
    Every ``(B, L)`` field moves with its row, ``position_ids`` included, and the attention mask is rotated along
    both axes, so each real token keeps its id, position and the set of real tokens it attends to: the forward
    over the real tokens is unchanged. Pad queries keep at least their own column, so no attention row is empty.

    Args:
        batch: a collated micro-batch (masks built on the unshifted layout).

    Returns:
        The same batch on ``L' = max real length`` columns (``image_positions`` recomputed).
    """
    valid = batch.valid
    length = valid.shape[1]
    if length == 0 or not valid.any(dim=1).all():
        return batch
    cols = torch.arange(length)
    last = torch.where(valid, cols, -1).amax(dim=1)  # (B,) last real column
    shift = (length - 1 - last).clamp(min=0)  # (B,) trailing pads, rotated to the front
    first = torch.where(valid, cols, length).amin(dim=1)  # (B,) first real column before rotation
    keep = int((last - first + 1).max())  # longest real span = columns kept
    src = (cols[None, :] - shift[:, None]) % length  # (B, L) new column c reads old column src[b, c]
    src = src[:, length - keep :]  # (B, L') the kept columns
    take = lambda t: t.gather(1, src)  # noqa: E731  (B, L) -> (B, L')
    mask = batch.attention_mask  # (B, 1, L, L)
    rows = src[:, None, :, None].expand(-1, 1, -1, length)
    mask = mask.gather(2, rows).gather(3, src[:, None, None, :].expand(-1, 1, keep, -1))  # (B, 1, L', L')
    fields = {
        name: take(getattr(batch, name))
        for name in ("input_ids", "labels", "position_ids", "valid", "image_mask", "pool_mask", "logit_mask")
    }
    n_t2i, n_img = batch.num_t2i, batch.image_positions.shape[1]
    t2i_image = fields["image_mask"][:n_t2i]
    positions = t2i_image.nonzero()[:, 1].view(n_t2i, n_img) if n_t2i else batch.image_positions
    return TrainBatch(**{**batch.__dict__, **fields, "attention_mask": mask, "image_positions": positions})


class _StageBatches(torch.utils.data.Dataset):
    """Map-style view: item ``k`` = this process's share of global micro-batch ``k`` of a stage."""

    def __init__(self, builder: BatchBuilder, start: dict[str, int], t2i: int, mmu: int, rank: int, world: int):
        self.builder, self.start, self.rank, self.world = builder, start, rank, world
        self.t2i, self.mmu = t2i, mmu

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, k: int) -> TrainBatch:
        lt, lm = self.t2i // self.world, self.mmu // self.world
        return self.builder.build(
            self.start["t2i"] + k * self.t2i + self.rank * lt, self.start["mmu"] + k * self.mmu + self.rank * lm, lt, lm
        )


def _identity(item: TrainBatch) -> TrainBatch:
    return item


def batch_loader(
    builder: BatchBuilder, plan: Any, start: dict[str, int], count: int, runtime: Any, num_workers: int = 0
) -> torch.utils.data.DataLoader:
    """``count`` consecutive micro-batches of a stage, starting at stream positions ``start``.

    Args:
        builder: the batch builder.
        plan: the :class:`~unif2ace.training.stages.StagePlan` (batch composition).
        start: ``{"t2i": position, "mmu": position}`` of the first micro-batch.
        count: number of micro-batches.
        runtime: process topology (rank, world size).
        num_workers: DataLoader workers.
    """
    view = _StageBatches(builder, start, plan.t2i_per_batch, plan.mmu_per_batch, runtime.rank, runtime.world_size)
    return torch.utils.data.DataLoader(
        view,
        batch_size=None,
        sampler=range(count),
        num_workers=num_workers,
        collate_fn=_identity,
        persistent_workers=False,
    )
