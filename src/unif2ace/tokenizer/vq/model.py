"""The LFQ image autoencoder (MAGVIT-v2 layout, spec §2.3): images in [-1, 1] <-> row-major token codes.

``VQModel(VQModelConfig())`` is Show-o's MAGVIT-v2 (``encoder`` / ``decoder`` / ``quantize`` submodules with the
upstream parameter names); smaller configs give the face tokenizers trained by :mod:`unif2ace.tokenizer.vq.trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unif2ace.tokenizer.vq.config import VQModelConfig
from unif2ace.tokenizer.vq.lfq import LFQOutput, LFQuantizer
from unif2ace.tokenizer.vq.modules import Decoder, Encoder


@dataclass
class VQOutput:
    """Result of :meth:`VQModel.forward`.

    Attributes:
        reconstruction: ``(B, C, H, W)`` decoded images (unclamped).
        quant: the quantiser output (latents, ``(B, h, w)`` codes, LFQ losses).
    """

    reconstruction: torch.Tensor
    quant: LFQOutput


class VQModel(nn.Module):
    """Encoder -> LFQ -> decoder.

    Args:
        config: architecture.
    """

    def __init__(self, config: VQModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.encoder, config.in_channels, config.z_channels, config.resolution)
        self.decoder = Decoder(config.decoder, config.out_channels, config.z_channels, config.resolution)
        self.quantize = LFQuantizer(config.quantizer)

    @property
    def codebook_size(self) -> int:
        """Number of codes ``2^d``."""
        return self.quantize.codebook_size

    @property
    def downsample_factor(self) -> int:
        """Pixels per token side."""
        return self.config.downsample_factor

    def _check_images(self, images: torch.Tensor) -> None:
        factor = self.downsample_factor
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"images must have shape (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % factor or images.shape[-1] % factor:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be a multiple of {factor}; resize first")

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantisation latents ``(B, C, H, W)`` -> ``(B, d, H/f, W/f)`` (after ``quant_conv``)."""
        self._check_images(images)
        return self.encoder(images)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Token codes of images in [-1, 1].

        Args:
            images: ``(B, C, H, W)`` float in [-1, 1].

        Returns:
            ``(B, h*w)`` int64 codes, row-major over the ``(h, w) = (H/f, W/f)`` latent grid.
        """
        codes = self.quantize.codes_from_latents(self.encode_latents(images))  # (B, h, w)
        return codes.reshape(codes.shape[0], -1)  # (B, h*w)

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """``(B, d, h, w)`` quantised latents -> ``(B, C, h·f, w·f)`` images (unclamped)."""
        return self.decoder(z_q)

    def decode(self, codes: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Images from token codes.

        Args:
            codes: ``(B, h*w)`` row-major codes (square grid unless ``shape`` is given) or ``(B, h, w)``.
            shape: ``(h, w)`` of the latent grid for non-square inputs.

        Returns:
            ``(B, C, h·f, w·f)`` float images, nominally in [-1, 1] (unclamped).
        """
        return self.decoder(self.quantize.get_codebook_entry(codes, shape=shape))

    def forward(self, images: torch.Tensor) -> VQOutput:
        """Autoencode with straight-through quantisation (training path).

        Args:
            images: ``(B, C, H, W)`` in [-1, 1].

        Returns:
            :class:`VQOutput` with the reconstruction and the quantiser output.
        """
        quant = self.quantize(self.encode_latents(images))
        return VQOutput(reconstruction=self.decoder(quant.z), quant=quant)
