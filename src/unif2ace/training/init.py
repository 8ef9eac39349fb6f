"""Initialising a model from a checkpoint: ours (``step-*`` folders), an exported model folder, or converted Show-o.

Compatibility is checked before any weight is copied and before any training work starts: every tensor of the
checkpoint must exist in the model with the same shape, and every model tensor must be in the checkpoint unless it
belongs to a module that is new in UniF²ace (grouped MoE, sequence MoE, resamplers), which then keeps its fresh
initialisation. A dense MLP in the checkpoint whose slot holds a grouped token MoE in the model (a Show-o checkpoint
loaded into a UniF²ace model) is upcycled into that MoE. With ``new_codebook`` (``train.init_new_codebook``) a
model made for another image codebook fits too: its text, special and mask rows are copied, the image-code rows
stay fresh. A mismatch stops with a one-line message naming the first offending key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unif2ace.training.checkpoint import COMPLETE, is_complete
from unif2ace.training.optim import classify_parameters
from unif2ace.utils.io import load_tensors

__all__ = ["InitReport", "check_compatible", "find_weights_file", "load_weights_into"]

_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.safetensors", "model.bin", "pytorch_model.bin")
#: Tensors with one row per id of the unified vocabulary (their sizes change with the image codebook).
_VOCAB_TENSORS = ("embed_tokens.weight", "lm_head.weight", "lm_head.bias")


class InitReport(dict):
    """Summary of an initialisation: ``loaded`` / ``kept_fresh`` key counts and the source path."""


def find_weights_file(path: str | Path) -> Path:
    """The weights file of a checkpoint folder, a model folder, or a weights file itself.

    Raises:
        FileNotFoundError: nothing loadable at ``path`` (an unfinished ``.tmp-*`` or marker-less ``step-*``
            folder counts as nothing).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"--init-from: no checkpoint or model folder at {path}")
    if path.name.startswith(".tmp-") or (path.name.startswith("step-") and not is_complete(path)):
        raise FileNotFoundError(f"--init-from: {path} is an unfinished checkpoint (no {COMPLETE} marker)")
    for name in _WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"--init-from: {path} holds no model weights ({' / '.join(_WEIGHT_NAMES)})")


def check_compatible(model: nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool) -> list[str]:
    """Check a state dict against a model without touching either.

    Args:
        model: the target model.
        state: checkpoint tensors.
        source: checkpoint path for messages.
        strict: require every model tensor (True for resuming); False lets new UniF²ace modules stay fresh.

    Returns:
        The model keys that the checkpoint does not provide (allowed only when not strict).

    Raises:
        ValueError: a checkpoint key is unknown to the model, a shape differs, or a required key is missing.
    """
    target = model.state_dict()
    for key, tensor in state.items():
        if key not in target:
            raise ValueError(
                f"incompatible checkpoint {source}: key '{key}' does not exist in the model "
                f"(check model.* in the config)"
            )
        if tuple(tensor.shape) != tuple(target[key].shape):
            hint = "; another image codebook: train.init_new_codebook=true" if key.endswith(_VOCAB_TENSORS) else ""
            raise ValueError(
                f"incompatible checkpoint {source}: key '{key}' has shape {tuple(tensor.shape)} "
                f"there but {tuple(target[key].shape)} in the model (check model.* in the config{hint})"
            )
    missing = [k for k in target if k not in state]
    if missing:
        infos = classify_parameters(model)
        required = [k for k in missing if strict or not (k in infos and infos[k].new)]
        if required:
            raise ValueError(
                f"incompatible checkpoint {source}: model key '{required[0]}' is missing there "
                f"({len(required)} missing in all)"
            )
    return missing


def _upcycle_dense_mlps(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Turn dense-MLP tensors (``<slot>.fc1/fc2.*``) whose slot is a grouped token MoE in the model into MoE tensors.

    A Show-o checkpoint has a dense Phi MLP where a UniF²ace model has a :class:`GroupedTokenMoE`; the MoE is then
    initialised with :meth:`GroupedTokenMoE.from_dense`, which computes exactly the dense MLP at step 0 (spec §3.2).

    Returns:
        The state with the dense tensors replaced by the upcycled MoE tensors, and the number of upcycled slots.
    """
    from unif2ace.model.moe import GroupedTokenMoE

    modules = dict(model.named_modules())
    upcycled = 0
    state = dict(state)
    for prefix, module in modules.items():
        keys = [f"{prefix}.{fc}.{p}" for fc in ("fc1", "fc2") for p in ("weight", "bias")]
        if not isinstance(module, GroupedTokenMoE) or not all(k in state for k in keys):
            continue
        w1, b1, w2, b2 = (state.pop(k) for k in keys)
        dense = nn.Module()
        dense.fc1, dense.fc2 = nn.Linear(w1.shape[1], w1.shape[0]), nn.Linear(w2.shape[1], w2.shape[0])
        with torch.no_grad():
            for layer, (w, b) in ((dense.fc1, (w1, b1)), (dense.fc2, (w2, b2))):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        cfg = module_token_moe_config(module)
        moe = GroupedTokenMoE.from_dense(dense, cfg)
        state.update({f"{prefix}.{k}": v for k, v in moe.state_dict().items()})
        upcycled += 1
    return state, upcycled


def module_token_moe_config(module: nn.Module) -> Any:
    """The :class:`TokenMoEConfig` that rebuilds ``module`` (sizes read off its routers and experts)."""
    from unif2ace.config.model import TokenMoEConfig

    name = next(iter(module.routers))
    router = module.routers[name]
    routed = module.experts[name]
    shared = module.shared_experts[name]
    return TokenMoEConfig(
        enabled=True,
        num_routed=len(routed),
        num_shared=len(shared),
        top_k=router.top_k,
        routed_intermediate=routed[0].fc1.out_features,
        shared_intermediate=shared[0].fc1.out_features if len(shared) else 1,
        balance_coef_und=module.balance_coefs.get("und", 0.0),
        balance_coef_gen=module.balance_coefs.get("gen", 0.0),
        renormalize=getattr(router, "renormalize", False),
    )


def _remap_codebook(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, from_parent: bool = False
) -> dict[str, torch.Tensor]:
    """Fit a checkpoint made for another image codebook into the model's unified vocabulary (spec §1 layout).

    The ids below ``vocab.image_offset`` (text + special tokens) and the last id (mask) mean the same in both
    layouts, so those rows of ``embed_tokens`` / ``lm_head`` are copied; the image-code rows keep the model's fresh
    initialisation, or with ``from_parent`` take the rows of their coarse parent ``c mod C_old`` (``lm_head.bias``
    lowered by ``log(C_new / C_old)``; ``C_new`` must be a multiple of ``C_old``). Tensors whose vocabulary size
    already matches are left alone.

    Raises:
        ValueError: the text + special part differs (another text tokenizer), so no row can be carried over; or
            ``from_parent`` with a new codebook that is not a multiple of the old one.
    """
    from unif2ace.model.transformer import Unif2aceTransformer

    target = model.state_dict()
    state = dict(state)
    for prefix, module in model.named_modules():
        if not isinstance(module, Unif2aceTransformer):
            continue
        kept = module.config.vocab.image_offset
        base = f"{prefix}." if prefix else ""
        for key in (base + name for name in _VOCAB_TENSORS):
            old, fresh = state.get(key), target.get(key)
            if old is None or fresh is None or old.shape[0] == fresh.shape[0]:
                continue
            if old.shape[1:] != fresh.shape[1:] or old.shape[0] <= kept + 1:
                raise ValueError(
                    f"incompatible checkpoint {source}: key '{key}' has shape {tuple(old.shape)}, which holds no "
                    f"{kept} text + special rows for the model's {tuple(fresh.shape)} (check model.vocab)"
                )
            merged = fresh.detach().clone()
            merged[:kept] = old[:kept].to(merged.dtype)
            merged[-1] = old[-1].to(merged.dtype)
            if from_parent:
                c_old, c_new = old.shape[0] - kept - 1, fresh.shape[0] - kept - 1
                if c_new % c_old:
                    raise ValueError(
                        f"train.init_codebook_from_parent: the model's {c_new} image codes are not a multiple of "
                        f"the {c_old} of {source}; train the coarse model with data.code_bits of the same tokenizer"
                    )
                parents = kept + torch.arange(c_new) % c_old
                merged[kept:-1] = old[parents].to(merged.dtype)
                if key.endswith("bias"):
                    merged[kept:-1] -= math.log(c_new // c_old)
            state[key] = merged
    return state


def load_weights_into(
    model: nn.Module, path: str | Path, strict: bool = True, new_codebook: bool = False, from_parent: bool = False
) -> InitReport:
    """Load checkpoint weights into ``model`` after :func:`check_compatible`.

    Args:
        model: the target (unwrapped) model.
        path: checkpoint folder, model folder or weights file.
        strict: see :func:`check_compatible`.
        new_codebook: the checkpoint may have another image codebook size (``train.init_new_codebook``): its
            text, special and mask rows are copied and the image-code rows stay fresh.
        from_parent: with ``new_codebook``, the image-code rows start as their coarse parents
            (``train.init_codebook_from_parent``; see :func:`_remap_codebook`).

    Returns:
        An :class:`InitReport`.
    """
    file = find_weights_file(path)
    state = load_tensors(file)
    if new_codebook:
        state = _remap_codebook(model, state, str(path), from_parent=from_parent)
    upcycled = 0
    if not strict:
        state, upcycled = _upcycle_dense_mlps(model, state)
    missing = check_compatible(model, state, str(path), strict)
    target = model.state_dict()
    with torch.no_grad():
        for key, tensor in state.items():
            target[key].copy_(tensor.to(dtype=target[key].dtype))
    return InitReport(source=str(file), loaded=len(state), kept_fresh=len(missing), upcycled=upcycled)
