"""Self-describing tokenizer folders and resumable training checkpoints (safetensors + JSON, no pickles).

Tokenizer folder (what ``--tokenizer DIR`` reads)::

    DIR/config.json          {"model": VQModelConfig, ...}  (a full VQConfig, or just {"model": ...})
    DIR/model.safetensors    weights used for inference (the EMA weights when the run kept an EMA)

Training checkpoint ``RUN/checkpoints/step-000001000/`` = a tokenizer folder plus
``online.safetensors`` (raw weights), ``discriminator.safetensors`` (when a GAN is used),
``optimizer.safetensors`` + ``training_state.json`` (optimizer tensors, step, RNG states, data position).
Every file is written atomically; a checkpoint folder is complete once ``training_state.json`` exists.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unif2ace.config.base import from_dict, to_dict
from unif2ace.tokenizer.vq.config import VQModelConfig
from unif2ace.tokenizer.vq.model import VQModel
from unif2ace.utils.io import atomic_write_json, load_tensors, read_json, save_tensors

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
STATE_NAME = "training_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def save_tokenizer(model: VQModel, folder: str | Path, extra_config: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` for ``model``.

    Args:
        model: the tokenizer.
        folder: destination (created).
        extra_config: other config sections to store beside ``model`` (e.g. the full training config).

    Returns:
        The folder.
    """
    folder = Path(folder)
    config = dict(extra_config or {})
    config["model"] = to_dict(model.config)
    save_tensors(folder / WEIGHTS_NAME, model.state_dict(), metadata={"format": "unif2ace-vq"})
    atomic_write_json(folder / CONFIG_NAME, config)
    return folder


def load_tokenizer_config(folder: str | Path) -> VQModelConfig:
    """Read the model section of ``folder/config.json``.

    Raises:
        FileNotFoundError: no ``config.json`` (message names the folder).
        ValueError: the file has no ``model`` section or it is invalid.
    """
    folder = Path(folder)
    data = read_json(folder / CONFIG_NAME, what="tokenizer config")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError(
            f"{folder / CONFIG_NAME} has no 'model' section; for MAGVIT-v2 weights run 'unif2ace vq convert-magvit'"
        )
    return from_dict(VQModelConfig, data["model"], prefix="model")


def load_tokenizer(folder: str | Path, device: str | torch.device = "cpu") -> VQModel:
    """Build a :class:`VQModel` from a tokenizer folder or a training checkpoint, in eval mode.

    Args:
        folder: folder with ``config.json`` and ``model.safetensors``; a run folder resolves to its latest checkpoint.
        device: where to put the weights.

    Raises:
        FileNotFoundError: the folder or its files are missing.
        ValueError: the weights do not match the config.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {folder}")
    folder = resolve_folder(folder, WEIGHTS_NAME, f"no {WEIGHTS_NAME} or complete checkpoint in {folder}")
    model = VQModel(load_tokenizer_config(folder))
    state = load_tensors(folder / WEIGHTS_NAME)
    missing, unexpected = _key_mismatch(model, state)
    if missing or unexpected:
        raise ValueError(
            f"weights in {folder / WEIGHTS_NAME} do not match its config: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _key_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape))
    return missing + [f"{k} (shape)" for k in wrong], unexpected


# ----------------------------------------------------------------------------------------------- training state
def optimizer_to_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors (for safetensors) and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars, "indices": list(state["state"])}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load the state into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for index in meta["indices"]:
        slots = {k.rsplit(".", 1)[-1]: v for k, v in tensors.items() if k.startswith(f"{prefix}.{index}.")}
        slots.update(meta["scalars"].get(str(index), {}))
        state[int(index)] = slots
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Global RNG states: torch (tensors) and Python / NumPy (JSON)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    meta = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``RUN/checkpoints/step-%09d``."""
    return Path(run_dir) / "checkpoints" / f"step-{step:09d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run (or of a ``checkpoints`` folder), oldest first."""
    root = Path(run_dir)
    root = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / STATE_NAME).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Newest complete checkpoint of a run, or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_folder(folder: str | Path, marker: str, missing: str) -> Path:
    """``folder`` when it holds the file ``marker``, else the newest complete checkpoint of the run at ``folder``.

    Raises:
        FileNotFoundError: neither; the message is ``missing``.
    """
    folder = Path(folder)
    if (folder / marker).is_file():
        return folder
    latest = latest_checkpoint(folder)
    if latest is None:
        raise FileNotFoundError(missing)
    return latest


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints; returns the deleted folders."""
    found = list_checkpoints(run_dir)
    doomed = found[:-keep] if keep > 0 else found
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def write_state_json(folder: Path, state: dict[str, Any]) -> None:
    """Write ``training_state.json`` last: its presence marks the checkpoint complete."""
    atomic_write_json(folder / STATE_NAME, json.loads(json.dumps(state)))
