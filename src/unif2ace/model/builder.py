"""Build, save and load :class:`Unif2aceTransformer` models from a :class:`ModelConfig`.

``build_model`` fills each block's feed-forward slot with a dense MLP or a grouped token MoE, and adds the
grouped sequence MoE when enabled (factories in :mod:`unif2ace.model.factories`). Checkpoints describe
themselves: ``model.safetensors`` + ``config.json`` (the model config as plain JSON).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from unif2ace.config.base import from_dict, to_dict
from unif2ace.config.model import ModelConfig
from unif2ace.model.layers import DenseMLP
from unif2ace.model.transformer import Unif2aceTransformer
from unif2ace.utils.io import atomic_write_json, load_tensors, read_json, save_tensors

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def _init_own(module: nn.Module, std: float = 0.02) -> None:
    """Init of the transformer's own layers: N(0, std) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_model(config: ModelConfig) -> Unif2aceTransformer:
    """A freshly initialised model for ``config`` (dense or MoE as the config says).

    Raises:
        ConfigError: invalid config (validated by the dataclasses).
    """
    if config.token_moe.enabled:
        from unif2ace.model.factories import build_feed_forward

        ffs = [build_feed_forward(config, i) for i in range(config.num_layers)]
    else:
        ffs = [DenseMLP(config.hidden_size, config.intermediate_size) for _ in range(config.num_layers)]
    mixers = None
    if config.seq_moe.enabled:
        from unif2ace.model.factories import build_sequence_mixers

        mixers = build_sequence_mixers(config)
    model = Unif2aceTransformer(config, ffs, mixers)
    own = [model.embed_tokens, model.final_layernorm, model.lm_head]
    for block in model.blocks:
        own += [block.input_layernorm, block.self_attn]
        if hasattr(block, "post_attention_layernorm"):
            own.append(block.post_attention_layernorm)
        if isinstance(block.mlp, DenseMLP):
            own.append(block.mlp)
    for part in own:
        part.apply(_init_own)
    return model


def save_pretrained(model: Unif2aceTransformer, directory: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory`` (atomic per file).

    Returns:
        The directory path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / WEIGHTS_NAME, model.state_dict(), metadata={"format": "unif2ace"})
    atomic_write_json(directory / CONFIG_NAME, {"model_type": "unif2ace", **to_dict(model.config)})
    return directory


def load_model_config(directory: str | Path) -> ModelConfig:
    """Read the :class:`ModelConfig` of a saved model directory."""
    data = read_json(Path(directory) / CONFIG_NAME, "model config")
    if not isinstance(data, dict):
        raise ValueError(f"model config {Path(directory) / CONFIG_NAME} must hold a JSON object")
    data = {k: v for k, v in data.items() if k != "model_type"}
    return from_dict(ModelConfig, data, prefix="model")


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one-line errors naming missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. '{missing[0]}'")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s), e.g. '{unexpected[0]}'")
        raise ValueError(f"weights {source} do not fit the model: {'; '.join(parts)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            want = tuple(own[key].shape)
            raise ValueError(f"weights {source}: '{key}' has shape {tuple(value.shape)} but the model expects {want}")
    model.load_state_dict(state, strict=True)


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> Unif2aceTransformer:
    """Load a model saved by :func:`save_pretrained`.

    Raises:
        FileNotFoundError: the directory, weights or config is missing (names the file).
        ValueError: corrupt file or weights that do not fit the config (names the key).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory not found: {directory}")
    config = load_model_config(directory)
    model = build_model(config)
    load_state_dict_strict(model, load_tensors(directory / WEIGHTS_NAME, device="cpu"), str(directory / WEIGHTS_NAME))
    return model.to(device)
