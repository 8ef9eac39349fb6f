"""Load Show-o's MAGVIT-v2 (``models/modeling_magvitv2.py``, HF ``showlab/magvitv2``) into :class:`VQModel`.

Two layouts are understood (spec §2.3, fixture README "magvit_config.json"):

* a config JSON with ``encoder_kwargs`` / ``decoder_kwargs`` / ``quantizer_kwargs`` (the constructor arguments of
  upstream ``VQGANEncoder`` / ``VQGANDecoder`` / ``LFQuantizer``), as in the golden fixtures;
* the real ``showlab/magvitv2`` folder, whose ``MAGVITv2.__init__`` takes no arguments: no config (or a config
  without those keys) means the hard-coded full-size model = ``VQModelConfig()`` (encoder ch 128,
  ch_mult [1,2,2,4,4], num_res_blocks [4,3,4,3,4]; decoder ch_mult [1,1,2,2,4], num_res_blocks [4,4,3,4,3];
  13-bit LFQ, 256 px).

Parameter names are identical to upstream, so the state dict loads with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unif2ace.tokenizer.vq.checkpoint import save_tokenizer
from unif2ace.tokenizer.vq.config import ConvStackConfig, LFQConfig, VQModelConfig
from unif2ace.tokenizer.vq.model import VQModel
from unif2ace.utils.io import load_tensors, read_json

#: Upstream constructor defaults (``VQGANEncoder`` / ``VQGANDecoder`` / ``LFQuantizer``).
_TOWER_DEFAULTS: dict[str, Any] = {
    "ch": 128,
    "attn_resolutions": [5],
    "dropout": 0.0,
    "in_ch": 3,
    "out_ch": 3,
    "resolution": 256,
    "z_channels": 13,
    "double_z": False,
}
_ENCODER_DEFAULTS = {**_TOWER_DEFAULTS, "ch_mult": [1, 2, 2, 4, 4], "num_res_blocks": [4, 3, 4, 3, 4]}
_DECODER_DEFAULTS = {**_TOWER_DEFAULTS, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": [4, 4, 3, 4, 3]}
_QUANTIZER_DEFAULTS: dict[str, Any] = {
    "num_codebook_entry": -1,
    "codebook_dim": 13,
    "beta": 0.25,
    "entropy_multiplier": 0.1,
    "commit_loss_multiplier": 0.1,
}
#: Weight file names tried, in order, when ``weights_path`` is a folder.
WEIGHT_FILES = (
    "magvit_state_dict.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.safetensors",
    "pytorch_model.bin",
    "diffusion_pytorch_model.bin",
)
CONFIG_FILES = ("magvit_config.json", "config.json")


def _merge(defaults: dict[str, Any], given: dict[str, Any] | None, what: str) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"MAGVIT-v2 config: unknown {what} arguments {unknown}; upstream accepts {sorted(defaults)}")
    return {**defaults, **given}


def _tower(kwargs: dict[str, Any]) -> ConvStackConfig:
    num_res_blocks = kwargs["num_res_blocks"]
    if isinstance(num_res_blocks, int):  # a scalar would repeat per level
        num_res_blocks = [num_res_blocks] * len(kwargs["ch_mult"])
    return ConvStackConfig(
        ch=int(kwargs["ch"]),
        ch_mult=[int(m) for m in kwargs["ch_mult"]],
        num_res_blocks=[int(n) for n in num_res_blocks],
        attn_resolutions=[int(r) for r in kwargs["attn_resolutions"]],
        dropout=float(kwargs["dropout"]),
        norm_groups=32,
    )


def magvit_model_config(config: dict[str, Any] | None = None) -> VQModelConfig:
    """Translate a MAGVIT-v2 config (``*_kwargs`` layout, or ``None`` for the full-size model) to ours.

    Args:
        config: mapping that may hold ``encoder_kwargs``, ``decoder_kwargs``, ``quantizer_kwargs`` (others ignored).

    Returns:
        The equivalent :class:`VQModelConfig`.

    Raises:
        ValueError: unsupported or inconsistent arguments (message names them).
    """
    config = config or {}
    enc = _merge(_ENCODER_DEFAULTS, config.get("encoder_kwargs"), "encoder")
    dec = _merge(_DECODER_DEFAULTS, config.get("decoder_kwargs"), "decoder")
    quant = _merge(_QUANTIZER_DEFAULTS, config.get("quantizer_kwargs"), "quantizer")
    dim = int(quant["codebook_dim"])
    if enc["double_z"]:
        raise ValueError("MAGVIT-v2 config: double_z=true is not supported by the LFQ model (quant_conv expects z)")
    for name, tower in (("encoder", enc), ("decoder", dec)):
        if int(tower["z_channels"]) != dim:
            raise ValueError(f"MAGVIT-v2 config: {name} z_channels {tower['z_channels']} != codebook_dim {dim}")
    if int(enc["resolution"]) != int(dec["resolution"]):
        resolutions = f"{enc['resolution']} vs {dec['resolution']}"
        raise ValueError(f"MAGVIT-v2 config: encoder/decoder resolutions differ ({resolutions})")
    if "codebook_size" in config and int(config["codebook_size"]) != 2**dim:
        raise ValueError(f"MAGVIT-v2 config: codebook_size {config['codebook_size']} != 2**codebook_dim ({2**dim})")
    return VQModelConfig(
        resolution=int(enc["resolution"]),
        in_channels=int(enc["in_ch"]),
        out_channels=int(dec["out_ch"]),
        encoder=_tower(enc),
        decoder=_tower(dec),
        quantizer=LFQConfig(
            codebook_dim=dim,
            beta=float(quant["beta"]),
            commit_loss_multiplier=float(quant["commit_loss_multiplier"]),
            entropy_multiplier=float(quant["entropy_multiplier"]),
        ),
    )


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    if what == "weights":
        raise FileNotFoundError(f"no MAGVIT-v2 weights in {folder}; expected one of {', '.join(names)}")
    return None


def _read_config(config_path: str | Path | None, weights_path: Path) -> dict[str, Any] | None:
    if config_path is None:
        folder = weights_path if weights_path.is_dir() else weights_path.parent
        found = _find(folder, CONFIG_FILES, "config")
        return read_json(found, what="MAGVIT-v2 config") if found else None
    data = read_json(config_path, what="MAGVIT-v2 config")
    if not isinstance(data, dict):
        raise ValueError(f"MAGVIT-v2 config {config_path} must hold a JSON object")
    return data


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``vq_model.``, ``module.``) shared by every key, if any."""
    for prefix in ("vq_model.", "module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_magvitv2(
    weights_path: str | Path, config_path: str | Path | None = None, device: str | torch.device = "cpu"
) -> VQModel:
    """Build our tokenizer from MAGVIT-v2 weights (strict key match), in eval mode.

    Args:
        weights_path: a ``.safetensors`` / ``.bin`` state dict, or a folder holding one (see ``WEIGHT_FILES``).
        config_path: JSON with ``encoder_kwargs`` / ``decoder_kwargs`` / ``quantizer_kwargs``; default: a
            ``magvit_config.json`` / ``config.json`` beside the weights, else the full-size upstream model.
        device: where to put the model.

    Returns:
        :class:`VQModel` with ``encode(images in [-1, 1]) -> (B, h*w) codes`` and ``decode(codes) -> images``.

    Raises:
        FileNotFoundError: weights or config missing.
        ValueError: config unsupported, or weights whose keys/shapes do not match it (message lists a few).
    """
    weights_path = Path(weights_path)
    if not weights_path.exists():
        raise FileNotFoundError(f"MAGVIT-v2 weights not found: {weights_path}")
    config = magvit_model_config(_read_config(config_path, weights_path))
    file = _find(weights_path, WEIGHT_FILES, "weights") if weights_path.is_dir() else weights_path
    state = _strip_prefix(load_tensors(file))
    model = VQModel(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"MAGVIT-v2 weights {file} do not match the config: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(bad_shape)} wrong shapes (e.g. {bad_shape[:2]})"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model.to(device).eval()


def convert_magvitv2(weights_path: str | Path, out_dir: str | Path, config_path: str | Path | None = None) -> Path:
    """Convert MAGVIT-v2 weights (e.g. a local copy of ``showlab/magvitv2``) to a unif2ace tokenizer folder.

    Args:
        weights_path: see :func:`load_magvitv2`.
        out_dir: destination; gets ``config.json`` + ``model.safetensors``.
        config_path: see :func:`load_magvitv2`.

    Returns:
        ``out_dir``.
    """
    model = load_magvitv2(weights_path, config_path)
    source = {"source": {"format": "magvitv2", "weights": str(Path(weights_path).resolve())}}
    return save_tokenizer(model, out_dir, extra_config=source)
