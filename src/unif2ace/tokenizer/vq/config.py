"""Typed configuration of the LFQ image tokenizer (architecture) and of its training run.

References: spec §2.3 (MAGVIT-v2 as used by Show-o: VQGAN-style conv encoder/decoder + lookup-free quantiser,
``LFQuantizer(codebook_dim=13)``), MAGVIT-v2 (Yu et al., arXiv 2310.05737, §3.1 LFQ and its entropy penalty).
``VQModelConfig()`` with no arguments is the full-size Show-o MAGVIT-v2 (256 px, 16x down, 2^13 codes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unif2ace.config.base import check

RECON_LOSSES = ("l1", "l2")
PERCEPTUAL_LOSSES = ("none", "msssim")


@dataclass
class ConvStackConfig:
    """One VQGAN-style conv tower (encoder or decoder); level ``i`` has ``ch * ch_mult[i]`` channels."""

    ch: int = 128
    """Base channel count (channels of ``conv_in`` of the encoder / last level of the decoder)."""
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 4, 4])
    """Channel multiplier per resolution level; ``len(ch_mult) - 1`` resamplings by 2."""
    num_res_blocks: list[int] = field(default_factory=lambda: [4, 3, 4, 3, 4])
    """ResnetBlocks per level (one entry per level, as upstream MAGVIT-v2; not VQGAN's ``+1`` in the decoder)."""
    attn_resolutions: list[int] = field(default_factory=lambda: [5])
    """Feature-map sizes that get an attention block after every ResnetBlock (upstream [5] = none)."""
    dropout: float = 0.0
    """Dropout inside ResnetBlocks."""
    norm_groups: int = 32
    """GroupNorm groups (upstream 32; lower it for channel counts below 32)."""

    def validate(self, name: str) -> None:
        """Check the fields; ``name`` is the dotted prefix used in error messages."""
        check(self.ch > 0, f"{name}.ch", "must be positive")
        check(len(self.ch_mult) >= 1, f"{name}.ch_mult", "needs at least one level")
        check(all(m > 0 for m in self.ch_mult), f"{name}.ch_mult", "multipliers must be positive")
        check(
            len(self.num_res_blocks) == len(self.ch_mult),
            f"{name}.num_res_blocks",
            f"needs one entry per level ({len(self.ch_mult)}), got {len(self.num_res_blocks)}",
        )
        check(all(n >= 0 for n in self.num_res_blocks), f"{name}.num_res_blocks", "counts must be >= 0")
        check(0.0 <= self.dropout < 1.0, f"{name}.dropout", "must be in [0, 1)")
        check(self.norm_groups > 0, f"{name}.norm_groups", "must be positive")
        for mult in (1, *self.ch_mult):
            channels = self.ch * mult
            check(
                channels % self.norm_groups == 0,
                f"{name}.norm_groups",
                f"{self.norm_groups} does not divide {channels} channels; pick a divisor of ch={self.ch}",
            )


def _decoder_default() -> ConvStackConfig:
    return ConvStackConfig(ch_mult=[1, 1, 2, 2, 4], num_res_blocks=[4, 4, 3, 4, 3])


@dataclass
class LFQConfig:
    """Lookup-free quantiser: codebook ``{-1, +1}^d`` of size ``2^d`` (MAGVIT-v2 §3.1)."""

    codebook_dim: int = 13
    """Bits per token ``d`` (= latent channels); codebook size ``2^d``."""
    beta: float = 0.25
    """Weight of the second commitment term: quantizer_loss = commit_loss_multiplier * (1 + beta) * mse."""
    commit_loss_multiplier: float = 0.1
    """Overall weight of the commitment loss (upstream 0.1)."""
    entropy_multiplier: float = 0.1
    """Weight of the entropy penalty (per-sample entropy - codebook entropy), upstream 0.1."""
    codebook_entropy: str = "bitwise"
    """Codebook term of the entropy penalty: ``bitwise`` (Show-o: mean per-bit entropy of the batch-averaged bit
    probabilities) or ``joint`` (entropy of the batch-averaged distribution over all ``2^d`` codes, divided by ``d``;
    it also penalises correlated bits, which ``bitwise`` cannot see; needs ``d <= 16``)."""

    def __post_init__(self) -> None:
        check(1 <= self.codebook_dim <= 30, "codebook_dim", "must be in [1, 30] (2^d codes)")
        check(self.codebook_entropy in ("bitwise", "joint"), "codebook_entropy", "must be 'bitwise' or 'joint'")
        check(
            self.codebook_entropy == "bitwise" or self.codebook_dim <= 16,
            "codebook_entropy",
            "'joint' enumerates all 2^d codes; use it with codebook_dim <= 16 or choose 'bitwise'",
        )
        check(self.beta >= 0, "beta", "must be >= 0")
        check(self.commit_loss_multiplier >= 0, "commit_loss_multiplier", "must be >= 0")
        check(self.entropy_multiplier >= 0, "entropy_multiplier", "must be >= 0")

    @property
    def codebook_size(self) -> int:
        """Number of codes ``2^d``."""
        return 2**self.codebook_dim


@dataclass
class VQModelConfig:
    """Architecture of the LFQ autoencoder; the defaults are Show-o's MAGVIT-v2 (``showlab/magvitv2``)."""

    resolution: int = 256
    """Nominal input size: places attention blocks by feature-map size and is the default encode size."""
    in_channels: int = 3
    """Image channels fed to the encoder."""
    out_channels: int = 3
    """Image channels produced by the decoder."""
    encoder: ConvStackConfig = field(default_factory=ConvStackConfig)
    """Encoder tower."""
    decoder: ConvStackConfig = field(default_factory=_decoder_default)
    """Decoder tower (levels listed from the finest to the coarsest, like the encoder)."""
    quantizer: LFQConfig = field(default_factory=LFQConfig)
    """Quantiser; ``z_channels`` of both towers equals ``quantizer.codebook_dim``."""

    def __post_init__(self) -> None:
        check(self.in_channels > 0, "model.in_channels", "must be positive")
        check(self.out_channels > 0, "model.out_channels", "must be positive")
        self.encoder.validate("model.encoder")
        self.decoder.validate("model.decoder")
        check(
            len(self.encoder.ch_mult) == len(self.decoder.ch_mult),
            "model.decoder.ch_mult",
            f"needs as many levels as the encoder ({len(self.encoder.ch_mult)}) so that it undoes the downsampling",
        )
        check(self.resolution > 0, "model.resolution", f"must be positive, got {self.resolution}")

    @property
    def z_channels(self) -> int:
        """Latent channels = LFQ bits."""
        return self.quantizer.codebook_dim

    @property
    def downsample_factor(self) -> int:
        """Spatial reduction ``2^(levels - 1)`` (8 or 16 for our presets)."""
        return 2 ** (len(self.encoder.ch_mult) - 1)

    @property
    def latent_size(self) -> int:
        """Token grid side for a ``resolution`` x ``resolution`` image."""
        return self.resolution // self.downsample_factor


@dataclass
class VQLossConfig:
    """Training objective: reconstruction + perceptual + LFQ terms + optional hinge PatchGAN."""

    recon: str = "l1"
    """Pixel reconstruction loss: ``l1`` or ``l2``."""
    recon_weight: float = 1.0
    """Weight of the pixel loss."""
    perceptual: str = "msssim"
    """Perceptual term: ``msssim`` (1 - MS-SSIM + image-gradient L1, no pretrained weights) or ``none``."""
    perceptual_weight: float = 0.5
    """Weight of the perceptual term."""
    quantizer_weight: float = 1.0
    """Extra factor on the LFQ commitment loss (which already carries ``quantizer.commit_loss_multiplier``)."""
    entropy_weight: float = 1.0
    """Extra factor on the LFQ entropy penalty (which already carries ``quantizer.entropy_multiplier``)."""
    adversarial_weight: float = 0.0
    """Generator hinge-loss weight after warm-up; 0 disables the discriminator entirely."""
    adversarial_start: int = 2000
    """Step at which the discriminator starts training (before it: no GAN terms)."""
    adversarial_warmup: int = 1000
    """Steps over which the generator's adversarial weight ramps linearly from 0 after ``adversarial_start``."""
    disc_channels: int = 64
    """Width of the first PatchGAN conv."""
    disc_layers: int = 3
    """Strided conv layers of the PatchGAN."""
    disc_lr: float = 1e-4
    """Discriminator learning rate (AdamW)."""

    def __post_init__(self) -> None:
        check(self.recon in RECON_LOSSES, "loss.recon", f"must be one of {RECON_LOSSES}, got {self.recon!r}")
        check(
            self.perceptual in PERCEPTUAL_LOSSES,
            "loss.perceptual",
            f"must be one of {PERCEPTUAL_LOSSES}, got {self.perceptual!r}",
        )
        for name in ("recon_weight", "perceptual_weight", "quantizer_weight", "entropy_weight", "adversarial_weight"):
            check(getattr(self, name) >= 0, f"loss.{name}", "must be >= 0")
        check(self.adversarial_start >= 0, "loss.adversarial_start", "must be >= 0")
        check(self.adversarial_warmup >= 0, "loss.adversarial_warmup", "must be >= 0")
        check(self.disc_channels > 0 and self.disc_layers >= 1, "loss.disc_layers", "need channels > 0, layers >= 1")
        check(self.disc_lr > 0, "loss.disc_lr", "must be positive")


@dataclass
class VQDataConfig:
    """Training images: folders, path lists (``.txt``) or records (``.jsonl``)."""

    sources: list[str] = field(default_factory=list)
    """Image folders (searched recursively), ``.txt`` files of paths, or ``.jsonl`` records with an image path."""
    image_size: int = 64
    """Training crop size (resize shorter side + centre crop)."""
    hflip: bool = True
    """Random horizontal flips."""
    held_out: int = 0
    """Number of images (taken deterministically from the list) kept out of training for validation grids."""
    cache: bool = True
    """Keep decoded, resized images in memory (uint8) after first use."""

    def __post_init__(self) -> None:
        check(self.image_size >= 16, "data.image_size", "must be >= 16")
        check(self.held_out >= 0, "data.held_out", "must be >= 0")


@dataclass
class VQTrainConfig:
    """Optimisation, logging and checkpointing of the tokenizer run."""

    seed: int = 0
    """Seed of model init, data order and flips."""
    batch_size: int = 16
    """Images per step."""
    max_steps: int = 6000
    """Optimiser steps."""
    lr: float = 2e-4
    """Peak learning rate (AdamW)."""
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    """AdamW betas (GAN-friendly defaults)."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up steps."""
    grad_clip: float = 1.0
    """Global grad-norm clip (0 disables)."""
    ema_decay: float = 0.999
    """EMA of the tokenizer weights (0 disables); checkpoints store both."""
    log_every: int = 50
    """Steps between metric lines in ``metrics.jsonl``."""
    sample_every: int = 500
    """Steps between reconstruction grids (0 disables)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (the last step is always saved)."""
    keep_last: int = 3
    """Checkpoints kept on disk."""
    usage_window: int = 200
    """Steps over which codebook usage / dead codes are counted."""
    device: str = "auto"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""
    num_threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    precision: str = "fp32"
    """``fp32``, or ``bf16``: autocast of the encoder / decoder convolutions to bfloat16 (weights, optimiser, LFQ and
    losses stay float32). 1.5-2.1x faster steps measured on a CPU with AMX / AVX512-BF16 (docs/tokenizer.md)."""
    init_from: str = ""
    """Tokenizer folder (a run, or one of its checkpoints) whose weights start this run: same architecture, fresh
    optimiser, step 0: a second stage such as the L2 fine-tune ``vq_faces_64_8k_w48_l2``. Empty: random init."""
    trainable: str = "all"
    """``all``, or ``decoder``: encoder and quantiser frozen, so the codes of every image stay exactly those of
    ``init_from`` (token shards and a transformer trained on them stay valid) while the decoder learns."""

    def __post_init__(self) -> None:
        check(self.seed >= 0, "train.seed", "must be >= 0")
        check(self.precision in ("fp32", "bf16"), "train.precision", "must be fp32 or bf16")
        check(self.trainable in ("all", "decoder"), "train.trainable", f"all or decoder, not {self.trainable!r}")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(self.max_steps >= 1, "train.max_steps", "must be >= 1")
        check(self.lr > 0, "train.lr", "must be positive")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas", "need two values in [0, 1)")
        check(0 <= self.ema_decay < 1, "train.ema_decay", "must be in [0, 1)")
        check(self.keep_last >= 1, "train.keep_last", "must be >= 1")
        check(self.log_every >= 1 and self.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
        check(self.usage_window >= 1, "train.usage_window", "must be >= 1")
        check(self.sample_every >= 0 and self.warmup_steps >= 0, "train.sample_every", "must be >= 0")


@dataclass
class VQConfig:
    """Root config of a tokenizer run: ``model`` + ``loss`` + ``data`` + ``train``."""

    model: VQModelConfig = field(default_factory=VQModelConfig)
    """Architecture."""
    loss: VQLossConfig = field(default_factory=VQLossConfig)
    """Objective."""
    data: VQDataConfig = field(default_factory=VQDataConfig)
    """Training images."""
    train: VQTrainConfig = field(default_factory=VQTrainConfig)
    """Optimisation and bookkeeping."""

    def __post_init__(self) -> None:
        factor = self.model.downsample_factor
        check(
            self.data.image_size % factor == 0,
            "data.image_size",
            f"{self.data.image_size} must be a multiple of the model's downsampling factor {factor}",
        )
