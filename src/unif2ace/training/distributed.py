"""Everything that knows about processes: HF ``accelerate`` (DDP / FSDP / DeepSpeed), precision, rank-aware logging.

The rest of the package sees a :class:`Runtime` (device, rank, world size, autocast context and a few collective
helpers). A single CPU process, one GPU, multi-GPU DDP, FSDP, DeepSpeed ZeRO-2/3 and multi-node runs all go
through the same code; the launch topology comes from ``accelerate launch`` (see ``docs/training.md``).
Precision policy (STYLE habit 6): fp32 on CPU by default (``auto``), bf16 autocast there only when asked for
(``mixed_precision: bf16``, worth it on CPUs with AMX / AVX512-BF16); bf16 (or fp16 where bf16 is
unsupported) autocast on GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unif2ace.utils.seed import seed_everything

__all__ = ["Runtime", "build_runtime", "get_logger", "process_seed", "resolve_precision"]

_LOG_FORMAT = "%(asctime)s [%(name)s] %(message)s"


def resolve_precision(requested: str, device_type: str) -> str:
    """Map the config's precision to accelerate's ``mixed_precision`` for this device.

    Args:
        requested: ``"auto"``, ``"no"``, ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"`` or ``"cuda"`` (anything else counts as an accelerator).

    Returns:
        On CPU ``"bf16"`` when asked for explicitly, else ``"no"`` (fp32; CPUs have no fp16 autocast worth using);
        on GPU ``"bf16"`` when supported for ``"auto"``.
    """
    if device_type == "cpu":
        return "bf16" if requested == "bf16" else "no"
    if requested == "auto":
        bf16_ok = device_type != "cuda" or torch.cuda.is_bf16_supported()
        return "bf16" if bf16_ok else "fp16"
    return requested


def process_seed(seed: int, rank: int) -> int:
    """Per-process seed for the global RNGs (dropout etc.): distinct per rank, a pure function of (seed, rank)."""
    return (int(seed) + 1_000_003 * int(rank)) % (2**63)


class _StderrHandler(logging.StreamHandler):
    """A stream handler bound to the *current* ``sys.stderr`` (redirections after creation are honoured)."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler assigns it in __init__
        pass


class _MainProcessFilter(logging.Filter):
    """Let records through only on the main process (rank 0) unless ``all_ranks`` was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "all_ranks", False) or int(os.environ.get("RANK", "0")) == 0


def get_logger(name: str = "unif2ace.train") -> logging.Logger:
    """A logger that prints on rank 0 only (pass ``extra={"all_ranks": True}`` to print everywhere)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, logging.StreamHandler) and getattr(h, "_unif2ace", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%H:%M:%S"))
        handler.addFilter(_MainProcessFilter())
        handler._unif2ace = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


@dataclass
class Runtime:
    """The process topology and precision of a run, wrapping an ``accelerate.Accelerator``.

    Attributes:
        accelerator: the underlying accelerator (only this module and the trainer's ``prepare`` touch it).
        precision: the resolved mixed-precision mode (``"no"`` / ``"bf16"`` / ``"fp16"``).
    """

    accelerator: Any
    precision: str

    @property
    def device(self) -> torch.device:
        """Device of this process."""
        return self.accelerator.device

    @property
    def rank(self) -> int:
        """Global process index."""
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        """Number of processes."""
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and logs."""
        return self.accelerator.is_main_process

    @property
    def distributed_type(self) -> str:
        """``"NO"``, ``"MULTI_CPU"``, ``"MULTI_GPU"``, ``"FSDP"``, ``"DEEPSPEED"``, ..."""
        return str(self.accelerator.distributed_type).split(".")[-1]

    @property
    def shards_parameters(self) -> bool:
        """True under FSDP or DeepSpeed ZeRO-3 (no process holds full parameters)."""
        if self.distributed_type == "FSDP":
            return True
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return self.distributed_type == "DEEPSPEED" and getattr(plugin, "zero_stage", 0) == 3

    @property
    def plain_optimizer_state(self) -> bool:
        """True when ``optimizer.state_dict()`` is the full torch state on every process (single process, DDP)."""
        return self.distributed_type not in ("FSDP", "DEEPSPEED", "MEGATRON_LM", "XLA")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for the forward pass (a no-op in fp32 / on CPU)."""
        if self.precision == "no":
            return contextlib.nullcontext()
        return self.accelerator.autocast()

    def accumulate(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """Gradient-accumulation context (skips the gradient all-reduce on non-final micro-batches)."""
        return self.accelerator.accumulate(model)

    @property
    def sync_gradients(self) -> bool:
        """True on the micro-batch that completes an optimizer step."""
        return self.accelerator.sync_gradients

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over processes (identity in a single process)."""
        if self.world_size == 1:
            return value
        return self.accelerator.reduce(value.detach().clone(), reduction="sum")

    def all_mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a tensor over processes."""
        return self.all_sum(value) / self.world_size

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, Any]:
        """Wrap model and optimizer for the topology (DDP / FSDP / DeepSpeed; device placement)."""
        return self.accelerator.prepare(model, optimizer)

    def agree(self, ok: bool) -> bool:
        """Collective AND of ``ok`` over processes (also a synchronisation point)."""
        if self.world_size == 1:
            return ok
        flag = torch.tensor([0.0 if ok else 1.0], device=self.device)
        return float(self.all_sum(flag)) == 0.0

    def backward(self, loss: torch.Tensor) -> None:
        """Backward pass (scaled for fp16 / gradient accumulation / DeepSpeed as the topology needs)."""
        self.accelerator.backward(loss)

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> float:
        """Clip the global gradient norm (``max_norm = 0``: measure only); returns the pre-clip norm or NaN."""
        norm = self.accelerator.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
        return float(norm) if norm is not None else float("nan")

    def barrier(self) -> None:
        """Wait for every process."""
        self.accelerator.wait_for_everyone()

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The bare model inside DDP / FSDP / DeepSpeed wrappers."""
        return self.accelerator.unwrap_model(model)

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The full (gathered) model state dict on CPU, for saving from the main process."""
        state = self.accelerator.get_state_dict(model)
        return {k: v.detach().cpu() for k, v in state.items()}

    def end(self) -> None:
        """Release trackers and the process group."""
        self.accelerator.end_training()


def build_runtime(
    mixed_precision: str,
    grad_accum_steps: int,
    seed: int,
    cpu: bool | None = None,
    find_unused_parameters: bool = False,
) -> Runtime:
    """Create the accelerator for this process and seed its global RNGs per rank.

    Args:
        mixed_precision: config value (``"auto"``, ``"no"``, ``"bf16"``, ``"fp16"``).
        grad_accum_steps: micro-batches per optimizer step.
        seed: base seed; the global RNGs get :func:`process_seed` ``(seed, rank)``.
        cpu: force CPU (default: CPU when no CUDA device is visible).
        find_unused_parameters: DDP option, needed for MoE models (experts without tokens in a batch).

    Returns:
        A :class:`Runtime`.
    """
    from accelerate import Accelerator  # lazy: only training needs it
    from accelerate.utils import DistributedDataParallelKwargs

    if cpu is None:
        cpu = not torch.cuda.is_available()
    device_type = "cpu" if cpu else "cuda"
    precision = resolve_precision(mixed_precision, device_type)
    if cpu and mixed_precision == "fp16":
        get_logger().warning("mixed_precision=fp16 ignored on CPU: training runs in fp32 (bf16 is supported)")
    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    accelerator = Accelerator(
        cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=grad_accum_steps, kwargs_handlers=[ddp]
    )
    seed_everything(process_seed(seed, accelerator.process_index))
    if not cpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(accelerator=accelerator, precision=precision)


@contextlib.contextmanager
def main_process_first(runtime: Runtime) -> Iterator[None]:
    """Run the body on the main process first (e.g. to create folders), then on the others."""
    with runtime.accelerator.main_process_first():
        yield
