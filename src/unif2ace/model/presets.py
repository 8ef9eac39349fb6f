"""Named model sizes as builder functions returning a :class:`ModelConfig` (STYLE habit 3).

``unif2ace_tiny`` and ``unif2ace_small`` are our CPU-trainable face models (64x64 images, 8x8 tokens);
``showo_1b3`` is Show-o's Phi-1.5 backbone (dense); ``unif2ace_1b8`` adds the paper's grouped MoEs at Show-o
size (spec §3.2 config E: per group 1 shared + 8 routed experts of width 512; sequence MoE with resamplers).
"""

from __future__ import annotations

from collections.abc import Callable

from unif2ace.config.model import ModelConfig, ResamplerConfig, SeqMoEConfig, TokenMoEConfig, VocabConfig

#: Id layout of our own small models: a BPE text vocabulary of 4096 (bos = eos = id 0) + 1024 image codes.
SMALL_VOCAB = dict(llm_vocab_size=4096, codebook_size=1024, bos_id=0, eos_id=0)
#: Show-o's layout (phi-1.5 tokenizer of length 50295, MAGVIT-v2 with 8192 codes).
SHOWO_VOCAB = dict(llm_vocab_size=50295, codebook_size=8192, bos_id=50256, eos_id=50256)


def unif2ace_tiny() -> ModelConfig:
    """~3.4 M parameters: d=128, 4 layers, token MoE (8 routed@64, top-2) + sequence MoE; CPU tests/training."""
    return ModelConfig(
        vocab=VocabConfig(**SMALL_VOCAB),
        hidden_size=128,
        num_layers=4,
        num_heads=4,
        intermediate_size=512,
        max_position_embeddings=512,
        token_moe=TokenMoEConfig(enabled=True, num_routed=8, top_k=2, routed_intermediate=64, shared_intermediate=256),
        seq_moe=SeqMoEConfig(
            enabled=True,
            feature_dims={"clip": 256, "face": 128},
            noise_dim=128,
            resampler=ResamplerConfig(dim=128, depth=1, heads=4, dim_head=32, num_queries=64),
        ),
    )


def unif2ace_small() -> ModelConfig:
    """~20 M parameters: d=256, 8 layers, 8 heads, both MoEs; the default shipped-model size."""
    return ModelConfig(
        vocab=VocabConfig(**SMALL_VOCAB),
        hidden_size=256,
        num_layers=8,
        num_heads=8,
        intermediate_size=1024,
        max_position_embeddings=512,
        token_moe=TokenMoEConfig(enabled=True, num_routed=8, top_k=2, routed_intermediate=128, shared_intermediate=512),
        seq_moe=SeqMoEConfig(
            enabled=True,
            feature_dims={"clip": 256, "face": 128},
            noise_dim=128,
            resampler=ResamplerConfig(dim=256, depth=2, heads=8, dim_head=32, num_queries=64),
        ),
    )


def showo_1b3() -> ModelConfig:
    """Show-o (phi-1.5 backbone, 2048 x 24 layers x 32 heads, vocab 58498), dense."""
    return ModelConfig(
        vocab=VocabConfig(**SHOWO_VOCAB),
        hidden_size=2048,
        num_layers=24,
        num_heads=32,
        intermediate_size=8192,
    )


def unif2ace_1b8() -> ModelConfig:
    """Show-o size with the paper's grouped token MoE (config E) and sequence MoE (256 image tokens)."""
    cfg = showo_1b3()
    cfg.token_moe = TokenMoEConfig(
        enabled=True, num_routed=8, top_k=4, routed_intermediate=512, shared_intermediate=512
    )
    cfg.seq_moe = SeqMoEConfig(
        enabled=True,
        feature_dims={"clip": 1024, "face": 512},
        noise_dim=512,
        resampler=ResamplerConfig(dim=1024, depth=4, heads=16, dim_head=64, num_queries=256),
    )
    return cfg


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "unif2ace_tiny": unif2ace_tiny,
    "unif2ace_small": unif2ace_small,
    "showo_1b3": showo_1b3,
    "unif2ace_1b8": unif2ace_1b8,
}


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return sorted(PRESETS)


def get_preset(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a named size.

    Raises:
        ValueError: unknown name (lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {', '.join(list_presets())}")
    return PRESETS[name]()
