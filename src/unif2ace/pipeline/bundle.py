"""Model bundles: one folder with everything inference needs, and ``unif2ace export`` that makes one.

Layout::

    BUNDLE/
        model.safetensors    transformer weights (``unif2ace.model.load_pretrained`` reads the folder)
        config.json          model config
        tokenizer/           text tokenizer (``unif2ace.tokenizer.load_text_tokenizer`` reads the folder)
        vq/                  image tokenizer (``unif2ace.tokenizer.vq.checkpoint.load_tokenizer`` reads it)
        bundle.json          name, layout, default sampling recipe, feature encoders, provenance, model hash

``bundle.json`` ``model_hash`` is the SHA-256 of ``model.safetensors``; every output of the pipeline records it,
so a result can be traced to the exact weights that produced it.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from unif2ace.utils.io import atomic_path, atomic_write_json, file_sha256, load_tensors, read_json, save_tensors

__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_BUNDLE_NAME",
    "BundleInfo",
    "LayoutInfo",
    "RecipeInfo",
    "default_bundle_dir",
    "export_bundle",
    "read_bundle_info",
]

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1
DEFAULT_BUNDLE_NAME = "faces-tiny"
EXPORT_HINT = (
    "unif2ace export runs/faces_tiny/checkpoints/step-XXXXXXX --vq runs/vq_faces_64 --ema "
    "--out src/unif2ace/weights/faces-tiny"
)


@dataclass
class LayoutInfo:
    """Prompt layout the model was trained with (``data.*`` of the training recipe)."""

    max_text_len: int
    num_image_tokens: int
    image_size: int
    describe_prompt: str = "Describe this person's face in detail."


@dataclass
class RecipeInfo:
    """Default sampling recipe (each can be overridden per call)."""

    steps: int = 16
    guidance_scale: float = 2.0
    schedule: str = "cosine"
    temperature: float = 1.0
    max_new_tokens: int = 64


@dataclass
class BundleInfo:
    """Contents of ``bundle.json``.

    Attributes:
        name: bundle name (shown in outputs and ``/v1/models``).
        layout: the training prompt layout.
        recipe: default sampling settings.
        features: sequence-MoE feature kind -> None (the model was trained with zeros = "missing") or a
            description of the encoder it was trained with (features are then computed at inference).
        provenance: where the weights came from (checkpoint, step, EMA, tokenizer folders).
        model_hash: SHA-256 of ``model.safetensors``.
        format: bundle format version.
    """

    name: str
    layout: LayoutInfo
    recipe: RecipeInfo = field(default_factory=RecipeInfo)
    features: dict[str, str | None] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    model_hash: str = ""
    format: int = BUNDLE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)


def default_bundle_dir() -> Path:
    """``unif2ace/weights/faces-tiny`` inside the installed package (it may not exist yet)."""
    return Path(str(resources.files("unif2ace"))) / "weights" / DEFAULT_BUNDLE_NAME


def read_bundle_info(folder: str | Path) -> BundleInfo:
    """Read and check ``folder/bundle.json``.

    Raises:
        FileNotFoundError: the folder or one of its parts is missing (names it and how to make a bundle).
        ValueError: ``bundle.json`` is malformed (names the field).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model bundle not found: {folder} (make one with: {EXPORT_HINT})")
    for part in ("model.safetensors", "config.json", "tokenizer", "vq", BUNDLE_FILE):
        if not (folder / part).exists():
            raise FileNotFoundError(f"{folder} is not a model bundle: {part} is missing (see unif2ace export)")
    data = read_json(folder / BUNDLE_FILE, "bundle file")
    try:
        info = BundleInfo(
            name=str(data["name"]),
            layout=LayoutInfo(**data["layout"]),
            recipe=RecipeInfo(**data.get("recipe", {})),
            features=dict(data.get("features", {})),
            provenance=dict(data.get("provenance", {})),
            model_hash=str(data.get("model_hash", "")),
            format=int(data.get("format", BUNDLE_FORMAT)),
        )
    except (KeyError, TypeError) as err:
        raise ValueError(f"{folder / BUNDLE_FILE}: malformed bundle file ({err}); re-run unif2ace export") from None
    if info.format > BUNDLE_FORMAT:
        raise ValueError(f"{folder / BUNDLE_FILE}: bundle format {info.format} is newer than this unif2ace; upgrade")
    return info


def write_bundle_info(folder: str | Path, info: BundleInfo) -> None:
    """Fill in ``model_hash`` from ``model.safetensors`` and write ``bundle.json`` atomically."""
    folder = Path(folder)
    info.model_hash = file_sha256(folder / "model.safetensors")
    atomic_write_json(folder / BUNDLE_FILE, info.to_dict())


def _copy_file(src: Path, dst: Path) -> None:
    """Copy atomically (a reader never sees half a file)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a folder into a temporary sibling, then swap it in."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _weights(checkpoint: Path, use_ema: bool) -> tuple[dict[str, torch.Tensor], bool]:
    """Model state of a checkpoint, with the EMA shadow weights swapped in when asked and present."""
    state = load_tensors(checkpoint / "model.safetensors")
    ema_file = checkpoint / "ema.safetensors"
    if not use_ema or not ema_file.is_file():
        return state, False
    ema = load_tensors(ema_file)
    unknown = sorted(set(ema) - set(state))
    if unknown:
        raise ValueError(f"{ema_file} has weights the model does not ({unknown[0]}); is it from this checkpoint?")
    for name, tensor in ema.items():
        state[name] = tensor.to(state[name].dtype)
    return state, True


def _layout_from_recipe(checkpoint: Path, vq_dir: Path) -> LayoutInfo:
    from unif2ace.tokenizer.vq.checkpoint import load_tokenizer_config

    recipe_file = checkpoint / "train_config.yaml"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{recipe_file} is missing; export needs a training checkpoint of unif2ace train")
    data = (yaml.safe_load(recipe_file.read_text()) or {}).get("data", {})
    vq_cfg = load_tokenizer_config(vq_dir)
    if "num_image_tokens" not in data:
        raise ValueError(f"{recipe_file} has no data.num_image_tokens; is it a unif2ace training recipe?")
    n = int(data["num_image_tokens"])
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"data.num_image_tokens={n} is not a square grid; export supports square images only")
    return LayoutInfo(
        max_text_len=int(data.get("max_text_len", 64)),
        num_image_tokens=n,
        image_size=side * vq_cfg.downsample_factor,
        describe_prompt=str(data.get("describe_prompt", LayoutInfo.describe_prompt)),
    )


def export_bundle(
    checkpoint: str | Path,
    vq_dir: str | Path,
    out: str | Path,
    use_ema: bool = True,
    name: str | None = None,
    recipe: RecipeInfo | None = None,
    storage_dtype: str = "float32",
) -> Path:
    """Make a bundle from a training checkpoint (``training/checkpoint.py`` layout) and a VQ tokenizer folder.

    Args:
        checkpoint: ``<run>/checkpoints/step-XXXXXXX`` (or a run folder: its latest complete checkpoint).
        vq_dir: tokenizer folder or VQ run folder (its latest checkpoint).
        out: destination folder (created; an existing bundle there is replaced).
        use_ema: take the EMA weights when the checkpoint has them.
        name: bundle name (default: the destination folder's name).
        recipe: default sampling recipe (default :class:`RecipeInfo`).
        storage_dtype: ``float32`` or ``float16``: the dtype floating-point model weights are stored in (float16
            halves the file; loading casts them back to the model's dtype). The image tokenizer stays float32.

    Returns:
        The bundle folder.

    Raises:
        FileNotFoundError: a part of the checkpoint or the tokenizer is missing.
        ValueError: the tokenizer's codebook or grid does not fit the model.
    """
    from unif2ace.model.builder import load_model_config
    from unif2ace.tokenizer.vq.checkpoint import WEIGHTS_NAME
    from unif2ace.tokenizer.vq.checkpoint import latest_checkpoint as latest_vq
    from unif2ace.training.checkpoint import latest_checkpoint

    checkpoint, vq_dir, out = Path(checkpoint), Path(vq_dir), Path(out)
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype {storage_dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
    if not (checkpoint / "model.safetensors").is_file() and (found := latest_checkpoint(checkpoint / "checkpoints")):
        checkpoint = found
    if not (checkpoint / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model.safetensors in {checkpoint}; pass a checkpoint folder of unif2ace train")
    if not (vq_dir / WEIGHTS_NAME).is_file() and (found_vq := latest_vq(vq_dir)) is not None:
        vq_dir = found_vq
    if not (vq_dir / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"no image tokenizer in {vq_dir}; pass --vq the folder of unif2ace vq train")
    if not (checkpoint / "tokenizer").is_dir():
        raise FileNotFoundError(f"{checkpoint / 'tokenizer'} is missing; the text tokenizer is needed for a bundle")
    model_cfg = load_model_config(checkpoint)
    layout = _layout_from_recipe(checkpoint, vq_dir)
    _check_vq_fits(vq_dir, model_cfg.vocab.codebook_size)
    state, ema_used = _weights(checkpoint, use_ema)
    cast = STORAGE_DTYPES[storage_dtype]
    state = {k: v.to(cast) if v.is_floating_point() else v for k, v in state.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / BUNDLE_FILE).unlink(missing_ok=True)  # written last: a folder without it is not a (finished) bundle
    save_tensors(out / "model.safetensors", state, metadata={"format": "unif2ace"})
    _copy_file(checkpoint / "config.json", out / "config.json")
    _copy_tree(checkpoint / "tokenizer", out / "tokenizer")
    for part in ("config.json", WEIGHTS_NAME):
        _copy_file(vq_dir / part, out / "vq" / part)
    seq = model_cfg.seq_moe
    kinds = (set(seq.und_experts) | set(seq.gen_experts)) & set(seq.feature_dims) if seq.enabled else set()
    trained_features = _recipe_features(checkpoint)
    recipe = recipe or RecipeInfo()
    recipe.max_new_tokens = layout.max_text_len  # answers may be as long as the texts the model was trained on
    info = BundleInfo(
        name=name or out.name,
        layout=layout,
        recipe=recipe,
        features={k: trained_features.get(k) for k in sorted(kinds)},
        provenance={
            "checkpoint": str(checkpoint.resolve()),
            "ema": ema_used,
            "vq": str(vq_dir.resolve()),
            "vq_sha256": file_sha256(vq_dir / WEIGHTS_NAME),
            "storage_dtype": storage_dtype,
        },
    )
    write_bundle_info(out, info)
    return out


def _recipe_features(checkpoint: Path) -> dict[str, str]:
    """Feature kinds the run was trained with (``data.features``: kind -> cache file)."""
    data = (yaml.safe_load((checkpoint / "train_config.yaml").read_text()) or {}).get("data", {})
    return {str(k): str(v) for k, v in (data.get("features") or {}).items() if v}


def _check_vq_fits(vq_dir: Path, codebook_size: int) -> None:
    from unif2ace.tokenizer.vq.checkpoint import load_tokenizer_config

    cfg = load_tokenizer_config(vq_dir)
    size = 2**cfg.quantizer.codebook_dim
    if size != codebook_size:
        raise ValueError(
            f"the image tokenizer in {vq_dir} has {size} codes but the model's vocab.codebook_size is {codebook_size}"
        )
