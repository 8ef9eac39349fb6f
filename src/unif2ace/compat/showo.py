"""Import Show-o checkpoints (``showlab/show-o``) into :class:`Unif2aceTransformer` — same function, our layout.

Show-o's ``Showo`` module wraps a Phi ``PhiForCausalLM`` as ``showo``; its state dict keys are
``showo.model.embed_tokens.weight``, ``showo.model.layers.{i}.input_layernorm.*``,
``showo.model.layers.{i}.self_attn.{q_proj,k_proj,v_proj,dense,q_layernorm,k_layernorm}.*``,
``showo.model.layers.{i}.mlp.{fc1,fc2}.*``, ``showo.model.final_layernorm.*`` and ``showo.lm_head.*``. Sizes come
from the config JSON: either the fixture layout (``showo_config`` + ``phi_config_*`` + ``vocab_layout``), or a
Show-o config (``vocab_size``, ``llm_vocab_size``, ``codebook_size`` ...) next to a Phi ``config.json``.

Conversion of the real weights (offline): see ``docs/convert_showo.md`` and ``unif2ace convert showo``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from unif2ace.config.model import ModelConfig, TokenMoEConfig, VocabConfig
from unif2ace.model.builder import build_model, load_state_dict_strict, save_pretrained
from unif2ace.model.transformer import Unif2aceTransformer
from unif2ace.utils.io import load_tensors, read_json

_PHI_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
_LAYER = re.compile(r"^showo\.model\.layers\.(\d+)\.(.*)$")


def _find_phi_config(data: dict[str, Any]) -> dict[str, Any]:
    for key in ("phi_config_after_construction", "phi_config_as_given_to_AutoConfig", "phi_config", "llm_config"):
        if isinstance(data.get(key), dict):
            return data[key]
    if all(k in data for k in _PHI_KEYS):
        return data
    raise ValueError(
        "Show-o config has no Phi sizes: expected 'phi_config_after_construction' (fixture layout) or the Phi "
        f"keys {', '.join(_PHI_KEYS)} at the top level"
    )


def _find_showo_fields(data: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    yaml_style = data.get("showo_yaml_style_config", {}).get("model", {}).get("showo", {})
    for source in (data, yaml_style, data.get("showo_config", {}), data.get("vocab_layout", {})):
        if isinstance(source, dict):
            fields.update({k: v for k, v in source.items() if not isinstance(v, dict)})
    layout = data.get("vocab_layout", {})
    specials = layout.get("special_token_ids", {}) if isinstance(layout, dict) else {}
    tok = layout.get("text_tokenizer", {}) if isinstance(layout, dict) else {}
    fields.setdefault("bos_id", specials.get("<|sot|>", tok.get("bos_token_id")))
    fields.setdefault("eos_id", specials.get("<|eot|>", tok.get("eos_token_id")))
    return fields


def showo_model_config(config: dict[str, Any] | str | Path) -> ModelConfig:
    """Our :class:`ModelConfig` for a Show-o config (dict or JSON path).

    Raises:
        ValueError: missing sizes, or a vocabulary that does not follow Show-o's layout.
    """
    data = read_json(config, "Show-o config") if isinstance(config, (str, Path)) else config
    if not isinstance(data, dict):
        raise ValueError("Show-o config must be a JSON object")
    phi, show = _find_phi_config(data), _find_showo_fields(data)
    llm_vocab = int(show.get("llm_vocab_size", 50295))
    n_special = int(show.get("num_new_special_tokens", 10))
    vocab_size = int(show.get("vocab_size", phi.get("vocab_size", 0)))
    codebook = int(show.get("codebook_size", vocab_size - llm_vocab - n_special - 1))
    if vocab_size != llm_vocab + n_special + codebook + 1:
        raise ValueError(
            f"Show-o vocabulary does not follow the layout vocab_size = llm_vocab_size + num_new_special_tokens + "
            f"codebook_size + 1 ({vocab_size} != {llm_vocab} + {n_special} + {codebook} + 1)"
        )
    bos = show.get("bos_id") if show.get("bos_id") is not None else phi.get("bos_token_id")
    bos = 50256 if bos is None else int(bos)
    eos = show.get("eos_id") if show.get("eos_id") is not None else bos
    if phi.get("hidden_act", "gelu_new") != "gelu_new":
        raise ValueError(f"unsupported Phi hidden_act {phi['hidden_act']!r} (only gelu_new)")
    return ModelConfig(
        vocab=VocabConfig(
            llm_vocab_size=llm_vocab,
            codebook_size=codebook,
            bos_id=bos,
            eos_id=int(eos),
            num_new_special_tokens=n_special,
        ),
        hidden_size=int(phi["hidden_size"]),
        num_layers=int(phi["num_hidden_layers"]),
        num_heads=int(phi["num_attention_heads"]),
        intermediate_size=int(phi["intermediate_size"]),
        partial_rotary_factor=float(phi.get("partial_rotary_factor", 0.5)),
        rope_theta=float(phi.get("rope_theta", 10000.0)),
        layer_norm_eps=float(phi.get("layer_norm_eps", 1e-5)),
        qk_layernorm=True,  # Show-o's PhiForCausalLM forces it on
        max_position_embeddings=int(phi.get("max_position_embeddings", 2048)),
        block_form="parallel",
    )


def showo_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Show-o keys to ours (``showo.model.layers.i.X`` -> ``blocks.i.X`` ...).

    Raises:
        ValueError: a key outside Show-o's naming (names it).
    """
    out = {}
    for key, value in state.items():
        m = _LAYER.match(key)
        if m:
            out[f"blocks.{m.group(1)}.{m.group(2)}"] = value
        elif key.startswith("showo.model."):
            out[key[len("showo.model.") :]] = value
        elif key.startswith("showo.lm_head."):
            out[key[len("showo.") :]] = value
        elif key.endswith("rotary_emb.inv_freq"):
            continue  # non-persistent RoPE buffer some exports include
        else:
            raise ValueError(f"unexpected key in Show-o state dict: '{key}' (expected the 'showo.' module prefix)")
    return out


def ours_to_showo(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`showo_to_ours` for a dense model."""
    out = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            out["showo.model.layers." + key[len("blocks.") :]] = value
        elif key.startswith("lm_head."):
            out["showo." + key] = value
        else:
            out["showo.model." + key] = value
    return out


def load_showo(
    weights_path: str | Path,
    config_path: str | Path,
    moe: bool = False,
    moe_config: TokenMoEConfig | None = None,
) -> Unif2aceTransformer:
    """Load a Show-o checkpoint as our model, computing the same function.

    Args:
        weights_path: Show-o state dict (``.safetensors``, or ``.bin``/``.pt`` read with ``weights_only=True``).
        config_path: config JSON (fixture layout, or Show-o + Phi fields).
        moe: upcycle every dense MLP into a grouped token MoE that equals it at step 0.
        moe_config: token-MoE sizes for ``moe=True`` (default: 8 routed experts of width d/4, top-2, shared
            expert as wide as the dense MLP).

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError / ValueError: missing or corrupt files, keys or shapes that do not fit (named).
    """
    config = showo_model_config(config_path)
    model = build_model(config)
    state = showo_to_ours(load_tensors(weights_path))
    load_state_dict_strict(model, state, str(weights_path))
    if moe:
        from unif2ace.model.factories import upcycle_feed_forward

        config.token_moe = moe_config or TokenMoEConfig(
            enabled=True,
            num_routed=8,
            top_k=2,
            routed_intermediate=max(1, config.hidden_size // 4),
            shared_intermediate=config.intermediate_size,
        )
        config.token_moe.enabled = True
        for i, block in enumerate(model.blocks):
            block.mlp = upcycle_feed_forward(block.mlp, config, i)
    return model.eval()


def convert_showo(weights_path: str | Path, config_path: str | Path, out_dir: str | Path, moe: bool = False) -> Path:
    """Convert a Show-o checkpoint to our ``model.safetensors`` + ``config.json`` directory.

    Raises:
        FileExistsError: ``out_dir`` already holds a model (nothing is overwritten).
    """
    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").exists():
        raise FileExistsError(f"{out_dir} already holds a model.safetensors; choose another --out")
    model = load_showo(weights_path, config_path, moe=moe)
    return save_pretrained(model, out_dir)
