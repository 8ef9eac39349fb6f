"""Atomic, self-describing training checkpoints (safetensors + JSON only; nothing is pickled).

Layout of one checkpoint (STYLE habit 9: weights kept apart from training state)::

    <run>/checkpoints/step-0000420/
        model.safetensors        full model weights (``unif2ace.model.load_pretrained`` loads the folder)
        config.json              model config (the model's ``save_pretrained`` format)
        train_config.yaml        the full recipe that produced it
        tokenizer/               the text tokenizer (``unif2ace.tokenizer.load_text_tokenizer`` reads the folder)
        ema.safetensors          EMA weights (only when EMA is on)
        training_state/
            state.json           step, stage, data position, LR-schedule position, python/numpy RNG states
            optimizer.safetensors  optimizer tensors, flattened as ``state/<param index>/<name>``
            optimizer.json       the optimizer's scalar structure (param groups, non-tensor state)
            rng-rank<r>.safetensors  torch (CPU + CUDA) and named-generator states of process r
        COMPLETE                 written last

Atomicity: everything is written into ``.tmp-step-0000420`` beside the final folder, every file is fsync'ed, the
``COMPLETE`` marker is written, then the folder is renamed (one ``rename(2)``) and the parent fsync'ed. Only folders
named ``step-*`` that contain ``COMPLETE`` are ever loaded, so a run killed at any moment leaves either the previous
checkpoint or the new one, never a loadable partial one. Deletion (keep-last-N) removes ``COMPLETE`` first.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unif2ace.utils.io import atomic_write_json, atomic_write_text, load_tensors, read_json, save_tensors

__all__ = [
    "COMPLETE",
    "CheckpointError",
    "TrainingState",
    "checkpoint_dirs",
    "flatten_optimizer_state",
    "is_complete",
    "latest_checkpoint",
    "load_training_state",
    "prune_checkpoints",
    "remove_partial",
    "rng_state",
    "set_rng_state",
    "unflatten_optimizer_state",
    "write_checkpoint",
]

COMPLETE = "COMPLETE"
_STEP_RE = re.compile(r"^step-(\d{7,})$")
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be written or does not fit the run (one-line message)."""


@dataclass
class TrainingState:
    """Scalar training state saved in ``training_state/state.json``.

    Attributes:
        global_step: optimizer steps done over all stages.
        stage_index: index of the stage in progress.
        stage_step: optimizer steps done inside that stage.
        data_position: per-stream sample counters (``{"t2i": 1200, "mmu": 1200}``) of the deterministic order.
        ema_updates: EMA update count.
        world_size: processes of the run that wrote it (for the RNG files).
        extra: free-form JSON-able extras (last metrics, tokens seen).
    """

    global_step: int = 0
    stage_index: int = 0
    stage_step: int = 0
    data_position: dict[str, int] = field(default_factory=dict)
    ema_updates: int = 0
    world_size: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def step_dirname(step: int) -> str:
    """``step-0000420`` for step 420."""
    return f"step-{step:07d}"


def is_complete(path: Path) -> bool:
    """True if ``path`` is a finished checkpoint folder."""
    return path.is_dir() and bool(_STEP_RE.match(path.name)) and (path / COMPLETE).is_file()


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (None if there is none)."""
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def remove_partial(root: str | Path) -> list[Path]:
    """Delete leftovers of interrupted saves (``.tmp-*`` folders); returns what was removed."""
    root = Path(root)
    removed = []
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(".tmp-") and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def prune_checkpoints(root: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (marker first, so none is half-loadable)."""
    dirs = checkpoint_dirs(root)
    doomed = dirs[: max(0, len(dirs) - keep_last)]
    for path in doomed:
        (path / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)
    return doomed


# ----------------------------------------------------------------------------------------------------- optimizer


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into flat tensors and a JSON-able structure.

    Returns:
        ``(tensors, meta)``: ``tensors["state/<idx>/<key>"]`` and ``meta = {"param_groups": [...], "scalars":
        {idx: {key: value}}}`` with every non-tensor value.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (``betas`` come back as tuples)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------------------------------------- RNG


def rng_state(generators: dict[str, torch.Generator] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Capture torch (CPU, CUDA) and named-generator states as tensors, python/numpy states as JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    for name, gen in (generators or {}).items():
        tensors[f"generator/{name}"] = gen.get_state()
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, meta


def set_rng_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], generators: dict[str, torch.Generator] | None = None
) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
        if states:
            torch.cuda.set_rng_state_all(states)
    for name, gen in (generators or {}).items():
        if f"generator/{name}" in tensors:
            gen.set_state(tensors[f"generator/{name}"])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------------------------------------------------- write


def _fsync_dir(path: Path) -> None:
    """Flush a directory entry (best effort on platforms without directory fds)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full_message(final: Path, previous: Path | None) -> str:
    kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
    return (
        f"disk full (ENOSPC) while writing checkpoint {final}; {kept}; free space (or lower train.keep_last) "
        f"and re-run the same command to resume"
    )


@dataclass
class CheckpointPayload:
    """What one process contributes to a checkpoint (the main process fills the shared parts).

    Attributes:
        model_state: full model state dict (main process only; None elsewhere).
        model_config: model config as plain data, written to ``config.json``.
        train_config_yaml: the recipe as YAML text.
        optimizer_state: ``optimizer.state_dict()`` (main process; identical across DDP ranks); None under
            FSDP / DeepSpeed, whose sharded optimizer states are not saved (the moments restart on resume).
        state: the scalar :class:`TrainingState`.
        ema_state: EMA shadow weights or None.
        generators: named generators of this process whose states must be restored.
        write_weights: optional override ``(folder, state_dict) -> None`` (defaults to safetensors + config.json).
        tokenizer: the text tokenizer (anything with ``save(directory)``), copied into ``tokenizer/``.
    """

    model_state: dict[str, torch.Tensor] | None
    model_config: dict[str, Any]
    train_config_yaml: str
    optimizer_state: dict[str, Any] | None
    state: TrainingState
    ema_state: dict[str, torch.Tensor] | None = None
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    write_weights: Callable[[Path, dict[str, torch.Tensor]], None] | None = None
    tokenizer: Any | None = None


def _write_main(tmp: Path, payload: CheckpointPayload) -> None:
    """Files written once, by the main process."""
    assert payload.model_state is not None
    if payload.write_weights is not None:
        payload.write_weights(tmp, payload.model_state)
    else:
        save_tensors(tmp / "model.safetensors", payload.model_state, metadata={"format": "unif2ace"})
        atomic_write_json(tmp / "config.json", {"model_type": "unif2ace", **payload.model_config})
    atomic_write_text(tmp / "train_config.yaml", payload.train_config_yaml)
    if payload.tokenizer is not None:
        payload.tokenizer.save(tmp / "tokenizer")
    if payload.ema_state is not None:
        save_tensors(tmp / "ema.safetensors", payload.ema_state, metadata={"format": "pt"})
    if payload.optimizer_state is not None:
        opt_tensors, opt_meta = flatten_optimizer_state(payload.optimizer_state)
        save_tensors(tmp / "training_state" / "optimizer.safetensors", opt_tensors)
        atomic_write_json(tmp / "training_state" / "optimizer.json", opt_meta)


def _write_rank(tmp: Path, payload: CheckpointPayload, rank: int) -> None:
    """Per-process files: RNG states."""
    tensors, meta = rng_state(payload.generators)
    save_tensors(tmp / "training_state" / f"rng-rank{rank}.safetensors", tensors)
    atomic_write_json(tmp / "training_state" / f"rng-rank{rank}.json", meta)


def _write_files(
    root: Path,
    final: Path,
    tmp: Path,
    payload: CheckpointPayload,
    rank: int,
    is_main: bool,
    agree: Callable[[bool], bool],
) -> OSError | None:
    """Write into ``tmp`` and rename it to ``final``; returns the first OSError of any process (collective)."""
    error: OSError | None = None
    try:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "training_state").mkdir(parents=True)
    except OSError as err:
        error = err
    if not agree(error is None):
        return error or OSError(errno.EIO, "another process failed to create the checkpoint folder")
    try:
        _write_rank(tmp, payload, rank)
        if is_main:
            _write_main(tmp, payload)
            state = {"format_version": FORMAT_VERSION, **asdict(payload.state)}
            atomic_write_json(tmp / "training_state" / "state.json", state)
    except OSError as err:
        error = err
    if not agree(error is None):
        return error or OSError(errno.EIO, "another process failed to write its part of the checkpoint")
    try:
        if is_main:
            atomic_write_text(tmp / COMPLETE, f"{final.name}\n")
            _fsync_dir(tmp)
            _fsync_dir(tmp / "training_state")
            os.replace(tmp, final)
            _fsync_dir(root)
    except OSError as err:
        error = err
    if not agree(error is None):
        return error or OSError(errno.EIO, "the main process failed to finalise the checkpoint")
    return None


def write_checkpoint(
    root: str | Path,
    payload: CheckpointPayload,
    rank: int = 0,
    is_main: bool = True,
    agree: Callable[[bool], bool] = lambda ok: ok,
    keep_last: int | None = None,
) -> Path:
    """Write one checkpoint atomically (collective: every process calls it with its own payload).

    Args:
        root: the run's ``checkpoints`` folder.
        payload: what to write (see :class:`CheckpointPayload`).
        rank: this process's index.
        is_main: True on the process that writes the shared files and renames the folder.
        agree: collective "did every process succeed" (also the synchronisation point); identity for one process.
        keep_last: prune to this many complete checkpoints afterwards (None = keep all).

    Returns:
        The final checkpoint folder.

    Raises:
        CheckpointError: the disk is full (ENOSPC) or the quota is exceeded; the previous checkpoint is intact.
        OSError: any other write error (the partial folder is removed).
    """
    root = Path(root)
    final = root / step_dirname(payload.state.global_step)
    tmp = root / f".tmp-{final.name}"
    previous = latest_checkpoint(root)
    if is_complete(final):
        return final
    error = _write_files(root, final, tmp, payload, rank, is_main, agree)
    if error is not None:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(_disk_full_message(final, previous)) from None
        raise error
    if is_main and keep_last is not None:
        prune_checkpoints(root, keep_last)
    return final


# ----------------------------------------------------------------------------------------------------------- load


def load_training_state(path: str | Path) -> TrainingState:
    """Read ``training_state/state.json`` of a complete checkpoint.

    Raises:
        CheckpointError: the folder is not a complete checkpoint or was written by an unknown format version.
    """
    path = Path(path)
    if not is_complete(path):
        raise CheckpointError(f"{path} is not a complete checkpoint (no {COMPLETE} marker); it cannot be resumed")
    data = read_json(path / "training_state" / "state.json", "training state")
    version = data.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: training-state format {version} is not supported (expected {FORMAT_VERSION})")
    return TrainingState(**data)


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    """The optimizer state dict saved in checkpoint ``path``."""
    state_dir = Path(path) / "training_state"
    tensors = load_tensors(state_dir / "optimizer.safetensors")
    return unflatten_optimizer_state(tensors, read_json(state_dir / "optimizer.json", "optimizer state"))


def load_rng_state(path: str | Path, rank: int, generators: dict[str, torch.Generator] | None = None) -> bool:
    """Restore this process's RNG states from checkpoint ``path``; False if it has no file for ``rank``."""
    state_dir = Path(path) / "training_state"
    file = state_dir / f"rng-rank{rank}.safetensors"
    if not file.is_file():
        return False
    set_rng_state(load_tensors(file), read_json(state_dir / f"rng-rank{rank}.json", "RNG state"), generators)
    return True


def read_model_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint or model folder as plain data."""
    return json.loads((Path(path) / "config.json").read_text())
