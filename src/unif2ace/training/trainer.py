"""The training loop: staged recipe, mixed T2I + MMU batches, D3Diff + MMU + balance losses, exact resume.

One :class:`Trainer` runs every stage of a :class:`~unif2ace.config.train.Unif2aceConfig` in order. Per optimizer
step it accumulates ``train.grad_accum_steps`` micro-batches, each one forward pass over T2I rows (masked image
tokens, D3Diff loss, spec §4.5) and MMU rows (shifted CE on answer tokens, spec §5), plus the MoE balance terms the
model returns (spec §3.2); then clipping, the warm-up + decay learning rate, AdamW, EMA, logging and checkpoints.

Token-mean loss terms are normalised by the *global* token count of the micro-batch (summed over processes), so
``N`` processes with ``1/N`` of the batch each produce the same gradient as one process with the whole batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from unif2ace.config.base import to_dict
from unif2ace.config.train import Unif2aceConfig
from unif2ace.training import checkpoint as ckpt
from unif2ace.training.batching import BatchBuilder, TrainBatch, batch_loader
from unif2ace.training.distributed import Runtime, get_logger
from unif2ace.training.ema import EMA
from unif2ace.training.init import load_weights_into
from unif2ace.training.losses import LossComputer
from unif2ace.training.metrics import MetricsLogger, ProgressBar, plot_loss_curve
from unif2ace.training.optim import apply_freeze, build_optimizer, lr_factor, set_learning_rates
from unif2ace.training.stages import StagePlan, locate_step, plan_stages
from unif2ace.utils.io import load_tensors

__all__ = ["PreviewFn", "TrainResult", "Trainer"]

#: ``preview_fn(model, step, out_dir)``: writes preview PNGs / captions for the current weights (main process).
PreviewFn = Callable[[nn.Module, int, Path], Any]
log = get_logger()


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports.

    Attributes:
        global_step: optimizer steps done.
        last_loss: total loss of the last step (NaN if no step ran).
        checkpoint: newest complete checkpoint.
        losses: total loss of every step run by this process invocation.
    """

    global_step: int
    last_loss: float
    checkpoint: Path | None
    losses: list[float] = field(default_factory=list)


class Trainer:
    """Runs a staged recipe on one process of a (possibly distributed) job.

    Args:
        cfg: the full config.
        model: the (unwrapped) model, already initialised (``--init-from`` applied by the caller).
        builder: turns data positions into :class:`TrainBatch` es.
        runtime: the process topology (:func:`~unif2ace.training.distributed.build_runtime`).
        out_dir: run folder (``checkpoints/``, ``metrics.jsonl``, ``loss_curve.png``, ``previews/``).
        preview_fn: optional ``preview_fn(model, step, out_dir)`` called every ``train.preview_every`` steps.
        model_writer: optional ``(folder, state_dict) -> None`` that writes weights + config.json
            (the model package's format); default writes ``model.safetensors`` + ``config.json`` itself.
        stop_after: stop (after checkpointing) once this many optimizer steps ran in this invocation (tests).
    """

    def __init__(
        self,
        cfg: Unif2aceConfig,
        model: nn.Module,
        builder: BatchBuilder,
        runtime: Runtime,
        out_dir: str | Path,
        preview_fn: PreviewFn | None = None,
        model_writer: Callable[[Path, dict[str, torch.Tensor]], None] | None = None,
        stop_after: int | None = None,
    ) -> None:
        self.cfg, self.model, self.builder, self.runtime = cfg, model, builder, runtime
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.preview_fn, self.model_writer, self.stop_after = preview_fn, model_writer, stop_after
        self.plans = plan_stages(cfg, runtime.world_size)
        self.state = ckpt.TrainingState(world_size=runtime.world_size, data_position={"t2i": 0, "mmu": 0})
        if cfg.train.ema_decay > 0 and runtime.shards_parameters:
            raise ValueError(
                "train.ema_decay > 0 needs full parameters on every process; use DDP or DeepSpeed "
                "ZeRO-2, or set train.ema_decay=0 under FSDP / ZeRO-3"
            )
        self.ema: EMA | None = None  # created from the final initial weights (after --init-from / resume)
        self.losses = LossComputer(cfg, runtime, position_weights=builder.position_weights)
        self._resume_from: Path | None = None
        self._losses_run: list[float] = []
        self._plot_disabled = False

    # ------------------------------------------------------------------------------------------------ resume

    def resume_if_possible(self) -> Path | None:
        """Load the newest complete checkpoint of ``out_dir`` (weights, EMA, step, data position, RNG).

        The optimizer state is loaded when its stage's optimizer is built. Returns the checkpoint or None.

        Raises:
            ValueError: the checkpoint does not fit the model (names the first mismatching key).
        """
        if self.runtime.is_main:
            ckpt.remove_partial(self.ckpt_dir)
        self.runtime.barrier()
        path = ckpt.latest_checkpoint(self.ckpt_dir)
        if path is None:
            return None
        state = ckpt.load_training_state(path)
        load_weights_into(self.model, path, strict=True)
        self._ensure_ema()
        if self.ema is not None and (path / "ema.safetensors").is_file():
            self.ema.load_state_dict(load_tensors(path / "ema.safetensors"), state.ema_updates)
        if not ckpt.load_rng_state(path, self.runtime.rank):
            log.warning(
                "%s has no RNG state for process %d (different world size); RNG streams restart",
                path,
                self.runtime.rank,
            )
        self.state = state
        self._resume_from = path
        log.info("resuming from %s (step %d)", path, state.global_step)
        return path

    def _ensure_ema(self) -> None:
        """Start the EMA from the current weights (once) when ``train.ema_decay > 0``."""
        if self.ema is None and self.cfg.train.ema_decay > 0:
            self.ema = EMA(self.runtime.unwrap(self.model), self.cfg.train.ema_decay)

    # ---------------------------------------------------------------------------------------------------- run

    def run(self) -> TrainResult:
        """Run (or finish) every stage; returns the final step, loss and checkpoint."""
        self._ensure_ema()
        total = self.cfg.total_steps
        metrics = MetricsLogger(
            self.out_dir / "metrics.jsonl",
            resume_step=self.state.global_step,
            enabled=self.runtime.is_main,
            tensorboard_dir=self.out_dir / "tensorboard" if self.cfg.train.tensorboard else None,
            wandb_project=self.cfg.train.wandb_project,
            run_config=to_dict(self.cfg),
        )
        bar = ProgressBar(total, self.state.global_step, self.runtime.is_main and self.cfg.train.progress_bar)
        try:
            stage_index, _ = locate_step(self.plans, self.state.global_step)
            for plan in self.plans[stage_index:]:
                if not self._run_stage(plan, metrics, bar):
                    break
        finally:
            bar.close()
            metrics.close()
        self._plot(metrics.path)
        last = self._losses_run[-1] if self._losses_run else float("nan")
        return TrainResult(self.state.global_step, last, ckpt.latest_checkpoint(self.ckpt_dir), self._losses_run)

    def _prepare_stage(self, plan: StagePlan) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Freeze per the stage, build AdamW and wrap both for the process topology; load optimizer state."""
        stage = plan.config
        raw = self.runtime.unwrap(self.model)
        trainable = apply_freeze(raw, stage.trainable, stage.frozen)
        tc = self.cfg.train
        optimizer, specs = build_optimizer(raw, stage.lr, stage.new_param_lr, tc.weight_decay, tuple(tc.betas), tc.eps)
        saved = self._resume_from
        if saved is not None and self.state.stage_index == plan.index and self.state.stage_step > 0:
            if (saved / "training_state" / "optimizer.safetensors").is_file():
                _load_optimizer(optimizer, saved)
            else:
                log.warning(
                    "%s has no optimizer state (written under %s); AdamW moments restart",
                    saved,
                    self.state.extra.get("distributed_type", "FSDP/DeepSpeed"),
                )
        wrapped, optimizer = self.runtime.prepare(raw, optimizer)
        n_train = sum(p.numel() for n, p in raw.named_parameters() if n in set(trainable))
        log.info(
            "stage %s: %d steps, %s trainable parameters in %d groups (%s)",
            plan.name,
            stage.steps,
            f"{n_train:,}",
            len(specs),
            ", ".join(f"{s.name}={len(s.params)}" for s in specs),
        )
        return wrapped, optimizer

    def _run_stage(self, plan: StagePlan, metrics: MetricsLogger, bar: ProgressBar) -> bool:
        """Train one stage from the current state; False if the run stopped early (``stop_after``)."""
        model, optimizer = self._prepare_stage(plan)
        if self.state.stage_index != plan.index:
            self.state.stage_index, self.state.stage_step = plan.index, 0
        accum = self.cfg.train.grad_accum_steps
        remaining = (plan.config.steps - self.state.stage_step) * accum
        loader = batch_loader(
            self.builder, plan, dict(self.state.data_position), remaining, self.runtime, self.cfg.data.num_workers
        )
        model.train()
        window: list[dict[str, float]] = []
        tokens, t0 = 0, time.perf_counter()
        for micro, batch in enumerate(loader):
            with self.runtime.accumulate(model):
                values, n_tok = self._micro_step(model, batch, micro % accum)
                window.append(values)
                tokens += n_tok
                assert self.runtime.sync_gradients == ((micro + 1) % accum == 0), "accumulation out of step"
                if self.runtime.sync_gradients:
                    grad_norm = self._optimizer_step(model, optimizer, plan)
            if (micro + 1) % accum:
                continue
            self._advance_data_position(plan, accum)
            summary = self._summarise(window, grad_norm, optimizer, tokens, time.perf_counter() - t0, plan)
            window, tokens, t0 = [], 0, time.perf_counter()
            self._after_step(summary, metrics, bar, plan, model, optimizer)
            if self.stop_after is not None and len(self._losses_run) >= self.stop_after:
                self._save(model, optimizer)
                return False
        self._save(model, optimizer)
        return True

    def _micro_step(self, model: nn.Module, batch: TrainBatch, micro_in_step: int) -> tuple[dict[str, float], int]:
        """Forward + backward of one micro-batch; returns logged loss values and its real-token count."""
        batch = batch.to(self.runtime.device)
        micro_index = self.state.global_step * self.cfg.train.grad_accum_steps + micro_in_step
        ctx = batch.routing_context(self.builder.noise_generator(micro_index, self.runtime.rank, batch.device))
        with self.runtime.autocast():
            out = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                ctx=ctx,
                logits_positions=batch.logit_mask,  # only where the loss reads them
            )
        breakdown = self.losses(out, batch)
        total = float(breakdown.total.detach())
        if not math.isfinite(total):
            raise ValueError(
                f"non-finite loss ({total}) at step {self.state.global_step + 1}; nothing was saved after the last "
                f"checkpoint; lower the learning rate or set train.mixed_precision=no"
            )
        self.runtime.backward(breakdown.total)
        return breakdown.to_log_dict(), int(batch.valid.sum())

    def _optimizer_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, plan: StagePlan) -> float:
        """Clip, set the scheduled learning rate, step AdamW and update the EMA; returns the gradient norm."""
        params = [p for p in model.parameters() if p.requires_grad]
        norm = self.runtime.clip_grad_norm(params, self.cfg.train.max_grad_norm)
        stage = plan.config
        factor = lr_factor(self.state.stage_step, stage.steps, stage.warmup_steps, stage.schedule, stage.min_lr_ratio)
        set_learning_rates(optimizer, factor)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.runtime.unwrap(model))
        self.state.global_step += 1
        self.state.stage_step += 1
        return norm

    def _advance_data_position(self, plan: StagePlan, accum: int) -> None:
        pos = self.state.data_position
        pos["t2i"] = pos.get("t2i", 0) + plan.t2i_per_batch * accum
        pos["mmu"] = pos.get("mmu", 0) + plan.mmu_per_batch * accum

    def _summarise(
        self,
        window: list[dict[str, float]],
        grad_norm: float,
        optimizer: torch.optim.Optimizer,
        tokens: int,
        seconds: float,
        plan: StagePlan,
    ) -> dict[str, float]:
        """Mean of the micro-batch values over micro-batches and processes, plus rates."""
        keys = sorted({k for w in window for k in w})
        local = torch.tensor(
            [sum(w.get(k, 0.0) for w in window) / len(window) for k in keys] + [float(tokens)],
            dtype=torch.float64,
            device=self.runtime.device,
        )
        reduced = self.runtime.all_sum(local)
        world = self.runtime.world_size
        summary = {k: float(v) / world for k, v in zip(keys, reduced[:-1].tolist(), strict=True)}
        summary["grad_norm"] = grad_norm
        summary["tokens_per_s"] = float(reduced[-1]) / max(seconds, 1e-9)
        for group in optimizer.param_groups:
            summary[f"lr/{group.get('name', 'group')}"] = group["lr"]
        return summary

    def _after_step(
        self,
        summary: dict[str, float],
        metrics: MetricsLogger,
        bar: ProgressBar,
        plan: StagePlan,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        """Progress bar, metrics, loss curve, previews and periodic checkpoints after an optimizer step."""
        step, tc = self.state.global_step, self.cfg.train
        loss = summary.get("loss/total", float("nan"))
        self._losses_run.append(loss)
        self.state.extra = {"last_loss": loss, "stage": plan.name, "distributed_type": self.runtime.distributed_type}
        bar.update(loss, summary["tokens_per_s"], plan.name)
        if step % tc.log_every == 0 or step == plan.end_step:
            metrics.log(step, {"stage": plan.index, **summary})
        if tc.plot_every and step % tc.plot_every == 0:
            self._plot(metrics.path)
        if self.preview_fn is not None and tc.preview_every and step % tc.preview_every == 0:
            self._preview(model, step)
        if step % tc.checkpoint_every == 0 and step != plan.end_step:
            self._save(model, optimizer)

    def _plot(self, metrics_path: Path) -> None:
        """Redraw ``loss_curve.png`` (main process; a missing matplotlib only costs the plot)."""
        if not self.runtime.is_main or self._plot_disabled:
            return
        try:
            plot_loss_curve(metrics_path, self.out_dir / "loss_curve.png")
        except ValueError as err:
            log.warning("loss curve disabled: %s", err)
            self._plot_disabled = True

    def _preview(self, model: nn.Module, step: int) -> None:
        if self.runtime.is_main:
            raw = self.runtime.unwrap(model)
            was_training = raw.training
            raw.eval()
            with torch.no_grad():
                self.preview_fn(raw, step, self.out_dir / "previews")
            raw.train(was_training)
        self.runtime.barrier()

    def _save(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> Path:
        """Write a checkpoint of the current state (collective)."""
        main = self.runtime.is_main
        state_dict = self.runtime.full_state_dict(model)
        raw_opt = getattr(optimizer, "optimizer", optimizer)
        if self.ema is not None:
            self.state.ema_updates = self.ema.num_updates
        payload = ckpt.CheckpointPayload(
            model_state=state_dict if main else None,
            model_config=to_dict(self.cfg.model),
            train_config_yaml=yaml.safe_dump(to_dict(self.cfg), sort_keys=False),
            optimizer_state=raw_opt.state_dict() if (main and self.runtime.plain_optimizer_state) else None,
            state=self.state,
            ema_state=self.ema.state_dict() if (self.ema is not None and main) else None,
            write_weights=self.model_writer,
            tokenizer=self.builder.layouts.tokenizer if main else None,
        )
        path = ckpt.write_checkpoint(
            self.ckpt_dir,
            payload,
            rank=self.runtime.rank,
            is_main=main,
            agree=self.runtime.agree,
            keep_last=self.cfg.train.keep_last,
        )
        log.info("saved %s", path)
        return path


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Load a checkpoint's optimizer state after checking that its parameter groups match this stage's.

    Raises:
        ValueError: group names or sizes differ (the freeze set or model changed since the checkpoint).
    """
    saved = ckpt.load_optimizer_state(path)
    current = optimizer.state_dict()["param_groups"]
    for mine, theirs in zip(current, saved["param_groups"], strict=False):
        if mine.get("name") != theirs.get("name") or len(mine["params"]) != len(theirs["params"]):
            raise ValueError(
                f"optimizer state of {path} does not fit this stage: group '{theirs.get('name')}' has "
                f"{len(theirs['params'])} parameters there and {len(mine['params'])} here"
            )
    if len(current) != len(saved["param_groups"]):
        raise ValueError(
            f"optimizer state of {path} has {len(saved['param_groups'])} parameter groups, this stage {len(current)}"
        )
    optimizer.load_state_dict(saved)
