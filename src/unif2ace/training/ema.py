"""Exponential moving average of model weights (fp32 shadow copies, saved beside the checkpoint weights).

``shadow <- d * shadow + (1 - d) * param`` after every optimizer step, with the warm-up
``d_n = min(decay, (1 + n) / (10 + n))`` so that early averages are not dominated by the initialisation.
Frozen parameters are averaged too (they simply stay equal to the weights).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """fp32 shadow copies of every floating-point parameter of a model.

    Args:
        model: the (unwrapped) model whose parameters are tracked.
        decay: the target decay ``d`` in ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.dtype.is_floating_point}

    def current_decay(self) -> float:
        """Decay used by the next update (warm-up form)."""
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current parameters of ``model`` into the averages."""
        d = self.current_decay()
        for name, param in model.named_parameters():
            shadow = self.shadow.get(name)
            if shadow is not None:
                shadow.lerp_(param.detach().to(device=shadow.device, dtype=shadow.dtype), 1.0 - d)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensors for safetensors: the shadow weights under their parameter names."""
        return {n: t.detach().cpu() for n, t in self.shadow.items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore shadows saved by :meth:`state_dict`.

        Raises:
            ValueError: the saved names differ from the tracked ones (names the first mismatch).
        """
        missing = sorted(set(self.shadow) ^ set(tensors))
        if missing:
            raise ValueError(f"EMA state does not match the model: parameter '{missing[0]}' differs")
        for name, tensor in tensors.items():
            self.shadow[name].copy_(tensor.to(self.shadow[name].dtype))
        self.num_updates = int(num_updates)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (e.g. before previews or export)."""
        for name, param in model.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name].to(param.dtype))
