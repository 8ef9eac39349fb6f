"""Exponential moving average of model weights (Polyak averaging) for the tokenizer."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay · shadow + (1 - decay) · online`` for floating-point parameters and buffers.

    The effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early averages are not
    dominated by the random initialisation.

    Args:
        model: the online model (copied once).
        decay: target decay in ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the online weights into the shadow copy."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        online = model.state_dict()
        for name, shadow in self.model.state_dict().items():
            if shadow.dtype.is_floating_point:
                shadow.lerp_(online[name].to(shadow.dtype), 1.0 - decay)
            else:
                shadow.copy_(online[name])
