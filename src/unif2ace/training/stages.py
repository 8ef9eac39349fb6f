"""Staged recipes: where each stage starts, its batch composition, and which stage a global step falls in.

A recipe (spec §6, optional two-stage schedule [INF]) is an ordered list of :class:`StageConfig`; stage ``i``
covers global optimizer steps ``[start_i, start_i + steps_i)``. Each stage builds its own optimizer (its freeze
set and learning rates differ); the model weights, EMA and data positions carry over.
"""

from __future__ import annotations

from dataclasses import dataclass

from unif2ace.config.base import ConfigError
from unif2ace.config.train import StageConfig, Unif2aceConfig

__all__ = ["StagePlan", "locate_step", "plan_stages"]


@dataclass(frozen=True)
class StagePlan:
    """One stage with its position in the recipe and resolved batch composition.

    Attributes:
        index: position in the recipe.
        config: the stage's config.
        start_step: global step at which the stage begins.
        t2i_per_batch: T2I samples per global micro-batch.
        mmu_per_batch: MMU samples per global micro-batch.
    """

    index: int
    config: StageConfig
    start_step: int
    t2i_per_batch: int
    mmu_per_batch: int

    @property
    def end_step(self) -> int:
        """First global step after the stage."""
        return self.start_step + self.config.steps

    @property
    def name(self) -> str:
        """Stage name."""
        return self.config.name


def plan_stages(cfg: Unif2aceConfig, world_size: int = 1) -> list[StagePlan]:
    """Resolve every stage's start step and batch sizes, checking that they split over ``world_size`` processes.

    Raises:
        ConfigError: a stage has an empty batch, or a batch size is not divisible by the number of processes.
    """
    plans = []
    start = 0
    for index, stage in enumerate(cfg.stages):
        t2i = cfg.data.t2i_per_batch if stage.t2i_per_batch < 0 else stage.t2i_per_batch
        mmu = cfg.data.mmu_per_batch if stage.mmu_per_batch < 0 else stage.mmu_per_batch
        if t2i + mmu == 0:
            raise ConfigError(f"config field 'stages[{stage.name}].t2i_per_batch': the stage has an empty batch")
        for kind, size in (("t2i", t2i), ("mmu", mmu)):
            if size % world_size:
                raise ConfigError(
                    f"config field 'data.{kind}_per_batch': {size} (stage {stage.name}) is not "
                    f"divisible by the {world_size} processes; use a multiple of {world_size}"
                )
        plans.append(StagePlan(index, stage, start, t2i, mmu))
        start += stage.steps
    return plans


def locate_step(plans: list[StagePlan], global_step: int) -> tuple[int, int]:
    """``(stage_index, steps done inside it)`` for a global step; past the end -> ``(len(plans), 0)``."""
    for plan in plans:
        if global_step < plan.end_step:
            return plan.index, global_step - plan.start_step
    return len(plans), 0
