"""Training loop of the LFQ image tokenizer (objective in :mod:`unif2ace.tokenizer.vq.losses`).

One step: batch ``(seed, step)`` -> autoencode -> generator loss -> AdamW step (grad-norm clip) -> optional hinge
PatchGAN step after ``loss.adversarial_start`` -> EMA update -> codebook-usage update. The run folder holds
``config.json``, ``metrics.jsonl`` (one JSON line per ``log_every`` steps), ``samples/step-*.png`` (originals row
over reconstructions row) and ``checkpoints/step-*`` (see :mod:`unif2ace.tokenizer.vq.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from unif2ace.config.base import to_dict
from unif2ace.tokenizer.vq import checkpoint as ckpt
from unif2ace.tokenizer.vq.config import VQConfig
from unif2ace.tokenizer.vq.data import ImageBatcher, collect_image_paths
from unif2ace.tokenizer.vq.ema import EMA
from unif2ace.tokenizer.vq.losses import PatchDiscriminator, adversarial_factor, generator_loss, hinge_d_loss
from unif2ace.tokenizer.vq.metrics import CodebookUsage, psnr
from unif2ace.tokenizer.vq.model import VQModel, VQOutput
from unif2ace.utils.images import from_tensor, image_grid
from unif2ace.utils.io import atomic_write_json, load_tensors, read_json, save_tensors
from unif2ace.utils.seed import seed_everything

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; other names are passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but CUDA is not available; use train.device=cpu")
    return device


def split_paths(paths: list[Path], held_out: int, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministically move ``held_out`` images (chosen by a seeded permutation) out of the training list."""
    if held_out == 0:
        return paths, []
    if held_out >= len(paths):
        raise ValueError(f"data.held_out={held_out} leaves no training images out of {len(paths)}")
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed + 17)).tolist()
    keep = set(order[held_out:])
    return [p for i, p in enumerate(paths) if i in keep], [p for i, p in enumerate(paths) if i not in keep]


def init_weights(model: VQModel, source: str | Path) -> None:
    """Copy the (EMA) weights of the tokenizer at ``source`` (a run or checkpoint folder) into ``model``.

    Raises:
        FileNotFoundError: no tokenizer at ``source``.
        ValueError: its architecture differs from ``model``'s (names the differing ``model.*`` settings).
    """
    try:
        trained = ckpt.load_tokenizer(source)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"train.init_from={source}: {err}") from None
    theirs, ours = to_dict(trained.config), to_dict(model.config)
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ:
        names = ", ".join(f"model.{k}" for k in differ)
        raise ValueError(f"train.init_from={source}: its {names} differ from this config's; use its recipe")
    model.load_state_dict(trained.state_dict(), strict=True)
    logger.info("weights initialised from %s", source)


class VQTrainer:
    """Trains a :class:`VQModel` from a :class:`VQConfig`.

    Args:
        config: full run config.
        run_dir: output folder (config, metrics, samples, checkpoints).
        paths: training images; default: expanded from ``config.data.sources``.
    """

    def __init__(self, config: VQConfig, run_dir: str | Path, paths: list[Path] | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        tc = config.train
        if tc.trainable != "all" and not tc.init_from:
            raise ValueError(f"train.trainable={tc.trainable} needs trained weights: pass --init-from TOKENIZER_RUN")
        if tc.num_threads > 0:
            torch.set_num_threads(tc.num_threads)
        self.device = resolve_device(tc.device)
        seed_everything(tc.seed)
        all_paths = paths if paths is not None else collect_image_paths(config.data.sources)
        train_paths, self.held_out_paths = split_paths(list(all_paths), config.data.held_out, tc.seed)
        self.data = ImageBatcher(train_paths, config.data.image_size, tc.seed, config.data.hflip, config.data.cache)
        self.model = VQModel(config.model).to(self.device)
        if tc.init_from:
            init_weights(self.model, tc.init_from)
        if tc.trainable == "decoder":
            self.model.encoder.requires_grad_(False)
            self.model.quantize.requires_grad_(False)
        self.ema = EMA(self.model, tc.ema_decay) if tc.ema_decay > 0 else None
        trained = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_g = torch.optim.AdamW(trained, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
        self.disc: PatchDiscriminator | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if config.loss.adversarial_weight > 0:
            lc = config.loss
            self.disc = PatchDiscriminator(config.model.in_channels, lc.disc_channels, lc.disc_layers).to(self.device)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=lc.disc_lr, betas=tuple(tc.betas))
        self.usage = CodebookUsage(self.model.codebook_size, tc.usage_window)
        self.step = 0

    # ------------------------------------------------------------------------------------------------ one step
    def learning_rate(self, step: int) -> float:
        """Linear warm-up to ``train.lr``, then cosine decay to 10 % of it at ``max_steps``."""
        tc = self.config.train
        if step < tc.warmup_steps:
            return tc.lr * (step + 1) / tc.warmup_steps
        progress = (step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps)
        return tc.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    def train_step(self) -> dict[str, float]:
        """Run one optimisation step at ``self.step`` and advance it; returns the logged scalars."""
        cfg, step = self.config, self.step
        images = self.data.batch(step, cfg.train.batch_size).to(self.device)
        self.model.train()
        for group in self.opt_g.param_groups:
            group["lr"] = self.learning_rate(step)
        use_gan = self.disc is not None and adversarial_factor(step, cfg.loss.adversarial_start, 1) > 0
        if self.disc is not None:
            self.disc.requires_grad_(False)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16"):
            out = self._autoencode(images)
        out = dataclasses.replace(out, reconstruction=out.reconstruction.float())  # losses in fp32
        gen = generator_loss(cfg.loss, images, out, step, self.disc if use_gan else None)
        self.opt_g.zero_grad(set_to_none=True)
        gen.total.backward()
        parts = dict(gen.parts, lr=self.opt_g.param_groups[0]["lr"])
        if cfg.train.grad_clip > 0:
            parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip))
        self.opt_g.step()
        if use_gan:
            parts["d_loss"] = self._discriminator_step(images, out.reconstruction.detach())
        if self.ema is not None:
            self.ema.update(self.model)
        self.usage.update(out.quant.codes)
        parts["psnr"] = float(psnr(out.reconstruction.detach(), images).mean())
        self.step += 1
        return parts

    def _autoencode(self, images: torch.Tensor) -> VQOutput:
        """The model's training forward; with a frozen encoder, encoder + LFQ run without autograd (eval mode)."""
        if self.config.train.trainable == "all":
            return self.model(images)
        self.model.encoder.eval()
        with torch.no_grad():
            quant = self.model.quantize(self.model.encode_latents(images))
        return VQOutput(reconstruction=self.model.decoder(quant.z), quant=quant)

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        assert self.disc is not None and self.opt_d is not None
        self.disc.requires_grad_(True)
        loss = hinge_d_loss(self.disc(real), self.disc(fake))
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return float(loss.detach())

    # ------------------------------------------------------------------------------------------------ the loop
    def train(self, max_steps: int | None = None, progress: bool = True) -> dict[str, float]:
        """Train until ``max_steps`` (default ``train.max_steps``); returns the last logged scalars.

        Checkpoints every ``checkpoint_every`` steps and at the end; grids every ``sample_every`` steps.
        """
        tc = self.config.train
        end = max_steps if max_steps is not None else tc.max_steps
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / "config.json", to_dict(self.config))
        last: dict[str, float] = {}
        bar = tqdm(total=end, initial=self.step, disable=not progress, desc="vq train", unit="step")
        started, first_step = time.perf_counter(), self.step
        while self.step < end:
            parts = self.train_step()
            bar.update(1)
            if self.step % tc.log_every == 0 or self.step == end:
                last = {**parts, **self.usage.stats(), "step": self.step}
                last["steps_per_s"] = (self.step - first_step) / max(1e-9, time.perf_counter() - started)
                self._log(last)
                bar.set_postfix(loss=f"{parts['loss']:.4f}", psnr=f"{parts['psnr']:.2f}", usage=f"{last['usage']:.2f}")
            if tc.sample_every and self.step % tc.sample_every == 0:
                self.save_samples()
            if self.step % tc.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
        bar.close()
        return last

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def inference_model(self) -> VQModel:
        """EMA weights when kept, else the online model."""
        return self.ema.model if self.ema is not None else self.model

    @torch.no_grad()
    def save_samples(self, count: int = 8) -> Path:
        """Write ``samples/step-*.png``: originals (top row) over reconstructions (bottom row)."""
        if self.held_out_paths:
            source = ImageBatcher(self.held_out_paths[:count], self.config.data.image_size, 0, hflip=False)
            images = source.batch(0, min(count, len(source)))
        else:
            images = self.data.batch(0, count)
        model = self.inference_model().eval()
        recon = model.decode(model.encode(images.to(self.device))).cpu()
        grid = image_grid([[from_tensor(x) for x in images], [from_tensor(x) for x in recon]])
        path = self.run_dir / "samples" / f"step-{self.step:09d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        return path

    # ------------------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-*`` (tokenizer + training state) atomically and prune old ones."""
        folder = ckpt.checkpoint_dir(self.run_dir, self.step)
        extra = {k: v for k, v in to_dict(self.config).items() if k != "model"}
        ckpt.save_tokenizer(self.inference_model(), folder, extra_config=extra)
        save_tensors(folder / "online.safetensors", self.model.state_dict())
        if self.disc is not None:
            save_tensors(folder / "discriminator.safetensors", self.disc.state_dict())
        tensors, meta = ckpt.optimizer_to_tensors(self.opt_g, "g")
        state: dict[str, Any] = {"step": self.step, "optim_g": meta, "bad_images": self.data.bad}
        if self.opt_d is not None:
            d_tensors, state["optim_d"] = ckpt.optimizer_to_tensors(self.opt_d, "d")
            tensors.update(d_tensors)
        rng_tensors, state["rng"] = ckpt.rng_state()
        tensors.update(rng_tensors)
        state["ema_updates"] = self.ema.updates if self.ema is not None else 0
        save_tensors(folder / "optimizer.safetensors", tensors)
        ckpt.write_state_json(folder, state)
        ckpt.prune_checkpoints(self.run_dir, self.config.train.keep_last)
        return folder

    def load_checkpoint(self, folder: str | Path) -> None:
        """Restore weights, EMA, discriminator, optimizers, step and RNG from a checkpoint (or a run's latest).

        Raises:
            FileNotFoundError: no complete checkpoint at ``folder``.
        """
        folder = ckpt.resolve_folder(folder, ckpt.STATE_NAME, f"no complete checkpoint in {folder}")
        state = read_json(folder / ckpt.STATE_NAME, what="training state")
        self.model.load_state_dict(load_tensors(folder / "online.safetensors", self.device), strict=True)
        if self.ema is not None:
            self.ema.model.load_state_dict(load_tensors(folder / ckpt.WEIGHTS_NAME, self.device), strict=True)
            self.ema.updates = int(state["ema_updates"])
        tensors = load_tensors(folder / "optimizer.safetensors")  # CPU; load_state_dict moves them
        ckpt.optimizer_from_tensors(self.opt_g, "g", tensors, state["optim_g"])
        if self.disc is not None and self.opt_d is not None:
            self.disc.load_state_dict(load_tensors(folder / "discriminator.safetensors", self.device), strict=True)
            ckpt.optimizer_from_tensors(self.opt_d, "d", tensors, state["optim_d"])
        ckpt.set_rng_state({k: v.cpu() for k, v in tensors.items() if k.startswith("rng.")}, state["rng"])
        self.data.bad.update(state.get("bad_images", {}))
        self.step = int(state["step"])
        logger.info("resumed from %s at step %d", folder, self.step)
