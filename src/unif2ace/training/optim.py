"""AdamW parameter groups, freeze groups and the warm-up + decay learning-rate schedule.

Show-o's recipe (spec §2.6): AdamW (0.9, 0.999), eps 1e-8, weight decay 0.01 except on biases, norms and
embeddings; cosine decay after a linear warm-up. UniF²ace adds new modules (grouped token MoE, sequence MoE,
resamplers) that get their own peak learning rate (spec §6: 1e-4 vs 5e-5 for the backbone), and an optional first
stage that trains only those modules. New parameters are recognised by the class names of the modules that own
them and by their dotted names (``router``, ``expert``, ``moe``, ``resampler``), so no model flag is needed.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "GROUP_ALIASES",
    "ParamGroupSpec",
    "apply_freeze",
    "build_optimizer",
    "classify_parameters",
    "lr_factor",
    "select_parameters",
    "set_learning_rates",
]

#: Class-name / dotted-name fragments that mark parameters added by UniF²ace on top of Show-o.
_NEW_RE = re.compile(r"moe|router|expert|resampler", re.IGNORECASE)
_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
#: Names accepted in ``StageConfig.trainable`` / ``frozen`` besides glob patterns.
GROUP_ALIASES = ("routers", "experts", "resamplers", "new", "backbone", "all")


@dataclass(frozen=True)
class ParamInfo:
    """What the optimizer needs to know about one parameter."""

    name: str
    new: bool
    decay: bool


def classify_parameters(model: nn.Module) -> dict[str, ParamInfo]:
    """Label every parameter as new-vs-backbone and decay-vs-no-decay.

    No decay: parameters of norm layers and embeddings, biases, and any parameter with fewer than 2 dims.
    New: parameters owned (at any depth) by a module whose class name or attribute path mentions
    MoE / router / expert / resampler.

    Args:
        model: the (unwrapped) model.

    Returns:
        Parameter name -> :class:`ParamInfo`, in ``named_parameters`` order.
    """
    owner_new: dict[str, bool] = {}
    owner_nodecay: dict[str, bool] = {}
    for mod_name, module in model.named_modules():
        parent_new = owner_new.get(mod_name.rsplit(".", 1)[0] if "." in mod_name else "", False) if mod_name else False
        owner_new[mod_name] = (
            parent_new
            or bool(_NEW_RE.search(type(module).__name__))
            or bool(_NEW_RE.search(mod_name.rsplit(".", 1)[-1]))
        )
        is_norm = isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
        owner_nodecay[mod_name] = is_norm or isinstance(module, nn.Embedding)
    infos = {}
    for name, param in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        leaf = name.rsplit(".", 1)[-1]
        new = owner_new.get(owner, False) or bool(_NEW_RE.search(leaf))
        decay = param.dim() >= 2 and not owner_nodecay.get(owner, False) and leaf != "bias"
        infos[name] = ParamInfo(name=name, new=new, decay=decay)
    return infos


def _matches(name: str, info: ParamInfo, pattern: str) -> bool:
    """True if parameter ``name`` belongs to alias or glob ``pattern``."""
    lowered = name.lower()
    if pattern == "all":
        return True
    if pattern == "new":
        return info.new
    if pattern == "backbone":
        return not info.new
    if pattern == "routers":
        return "router" in lowered
    if pattern == "experts":
        return "expert" in lowered and "router" not in lowered
    if pattern == "resamplers":
        return "resampler" in lowered
    return fnmatch.fnmatchcase(name, pattern)


def select_parameters(model: nn.Module, patterns: list[str]) -> set[str]:
    """Names of the parameters matched by any alias (``GROUP_ALIASES``) or glob in ``patterns``."""
    infos = classify_parameters(model)
    return {n for n, info in infos.items() if any(_matches(n, info, p) for p in patterns)}


def apply_freeze(model: nn.Module, trainable: list[str], frozen: list[str]) -> list[str]:
    """Set ``requires_grad`` for a stage: ``trainable`` (empty = all) minus ``frozen``.

    Args:
        model: the (unwrapped) model.
        trainable: aliases / globs of parameters to train; empty trains everything.
        frozen: aliases / globs frozen afterwards.

    Returns:
        Names of the trainable parameters.

    Raises:
        ValueError: a pattern matches no parameter, or nothing is left to train.
    """
    for pattern in [*trainable, *frozen]:
        if not select_parameters(model, [pattern]):
            raise ValueError(
                f"freeze pattern {pattern!r} matches no parameter; use a glob on parameter names or "
                f"one of {', '.join(GROUP_ALIASES)}"
            )
    names = select_parameters(model, trainable) if trainable else {n for n, _ in model.named_parameters()}
    names -= select_parameters(model, frozen)
    if not names:
        raise ValueError(f"stage trains no parameter (trainable={trainable}, frozen={frozen})")
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    return [n for n, _ in model.named_parameters() if n in names]


@dataclass(frozen=True)
class ParamGroupSpec:
    """One AdamW group: its parameter names, peak learning rate and weight decay."""

    name: str
    params: list[str]
    lr: float
    weight_decay: float


def param_group_specs(model: nn.Module, lr: float, new_lr: float, weight_decay: float) -> list[ParamGroupSpec]:
    """Split the trainable parameters into (backbone | new) x (decay | no decay) groups, dropping empty ones."""
    infos = classify_parameters(model)
    buckets: dict[tuple[bool, bool], list[str]] = {(n, d): [] for n in (False, True) for d in (True, False)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            info = infos[name]
            buckets[(info.new, info.decay)].append(name)
    specs = []
    for (new, decay), names in buckets.items():
        if names:
            label = f"{'new' if new else 'backbone'}_{'decay' if decay else 'no_decay'}"
            specs.append(ParamGroupSpec(label, names, new_lr if new else lr, weight_decay if decay else 0.0))
    return specs


def build_optimizer(
    model: nn.Module, lr: float, new_lr: float, weight_decay: float, betas: tuple[float, float], eps: float
) -> tuple[torch.optim.AdamW, list[ParamGroupSpec]]:
    """AdamW over the trainable parameters with the four groups of :func:`param_group_specs`.

    Each group keeps its peak rate in ``group["peak_lr"]``; :func:`set_learning_rates` scales it every step.

    Returns:
        ``(optimizer, specs)``.
    """
    specs = param_group_specs(model, lr, new_lr or lr, weight_decay)
    params = dict(model.named_parameters())
    groups = [
        {
            "params": [params[n] for n in s.params],
            "lr": s.lr,
            "peak_lr": s.lr,
            "weight_decay": s.weight_decay,
            "name": s.name,
        }
        for s in specs
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    return optimizer, specs


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based) of a stage with ``total`` steps.

    Linear warm-up ``(step + 1) / warmup`` for ``step < warmup``, then ``cosine`` / ``linear`` decay from 1 to
    ``min_ratio`` at ``step = total`` (``constant`` stays at 1).
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        decay = 1.0 - progress
    else:
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * decay


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> list[float]:
    """Set every group's ``lr`` to ``peak_lr * factor``; returns the new rates."""
    rates = []
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
        rates.append(group["lr"])
    return rates
