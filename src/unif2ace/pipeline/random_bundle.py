"""A tiny randomly initialised bundle (random transformer with both MoEs, random VQ, small BPE) for tests and demos.

Its outputs are noise and babble; it exercises every code path of the pipeline, CLI and server in well under a
second per call on a CPU. Deterministic for a given ``seed``: the same weights, tokenizer and hash every time.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from unif2ace.pipeline.bundle import BundleInfo, LayoutInfo, RecipeInfo, write_bundle_info

__all__ = ["create_random_bundle", "builtin_sentences"]

_WHO = ["A young woman", "An older man", "A smiling girl", "A middle-aged man", "A woman", "A bald man"]
_HAIR = ["with short black hair", "with long blond hair", "with curly brown hair", "with grey hair", "with red hair"]
_EXTRA = [
    "wearing glasses",
    "with a beard",
    "with blue eyes",
    "looking at the camera",
    "in front of a plain background",
    "with arched eyebrows",
]
_QA = [
    ("What colour is the hair?", "The hair is black."),
    ("Is the person smiling?", "Yes, the person is smiling."),
    ("Does the person wear glasses?", "No, there are no glasses."),
    ("How old does the person look?", "The person looks young."),
]


def builtin_sentences() -> list[str]:
    """Face descriptions and VQA turns the tiny BPE is trained on (no data files needed)."""
    captions = [f"{w} {h}, {e}." for w, h, e in itertools.product(_WHO, _HAIR, _EXTRA)]
    turns = [f"USER: {q} ASSISTANT: {a}" for q, a in _QA]
    return captions + turns + ["Describe this person's face in detail."]


def _vq_config(image_size: int, codebook_dim: int):
    from unif2ace.tokenizer.vq.config import ConvStackConfig, LFQConfig, VQModelConfig

    stack = dict(ch=16, ch_mult=[1, 1, 2, 2], num_res_blocks=[1, 1, 1, 1], attn_resolutions=[], norm_groups=8)
    return VQModelConfig(
        resolution=image_size,
        encoder=ConvStackConfig(**stack),
        decoder=ConvStackConfig(**stack),
        quantizer=LFQConfig(codebook_dim=codebook_dim),
    )


def _model_config(num_tokens: int, text_vocab: int, codebook: int, max_len: int):
    from unif2ace.config.model import ModelConfig, ResamplerConfig, SeqMoEConfig, TokenMoEConfig, VocabConfig

    return ModelConfig(
        vocab=VocabConfig(llm_vocab_size=text_vocab, codebook_size=codebook, bos_id=0, eos_id=0),
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        max_position_embeddings=max_len,
        token_moe=TokenMoEConfig(enabled=True, num_routed=4, top_k=2, routed_intermediate=32, shared_intermediate=64),
        seq_moe=SeqMoEConfig(
            enabled=True,
            feature_dims={"clip": 16, "face": 16},
            noise_dim=16,
            resampler=ResamplerConfig(dim=32, depth=1, heads=2, dim_head=16, num_queries=num_tokens),
        ),
    )


def create_random_bundle(
    out_dir: str | Path, seed: int = 0, image_size: int = 64, max_text_len: int = 32, name: str = "random-tiny"
) -> Path:
    """Write a random tiny bundle (8x-down VQ with 64 codes, d=64 two-layer MoE transformer, BPE of <= 512 ids).

    Args:
        out_dir: destination folder.
        seed: weights seed.
        image_size: image side (a multiple of 8; ``(image_size / 8)^2`` tokens).
        max_text_len: text budget of the layout.
        name: bundle name.

    Returns:
        The bundle folder.
    """
    from unif2ace.model.builder import build_model, save_pretrained
    from unif2ace.tokenizer.text import BPETokenizer
    from unif2ace.tokenizer.vq.checkpoint import save_tokenizer
    from unif2ace.tokenizer.vq.model import VQModel

    if image_size % 8 or image_size < 16:
        raise ValueError(f"image_size must be a multiple of 8 and >= 16, got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_tokens = (image_size // 8) ** 2
    tokenizer = BPETokenizer.train(builtin_sentences(), vocab_size=512, min_frequency=1)
    tokenizer.save(out / "tokenizer")
    cfg = _model_config(num_tokens, 512, 64, max_len=max_text_len + num_tokens + 3 + 96)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg).eval()
        with torch.no_grad():  # variance-preserving weights: with the training init (std 0.02) a random model's
            for param in model.parameters():  # outputs barely depend on its inputs, which would hide bugs in tests
                if param.dim() >= 2:
                    param.normal_(0.0, param.shape[-1] ** -0.5)
        vq = VQModel(_vq_config(image_size, codebook_dim=6)).eval()
    save_pretrained(model, out)
    save_tokenizer(vq, out / "vq")
    info = BundleInfo(
        name=name,
        layout=LayoutInfo(max_text_len=max_text_len, num_image_tokens=num_tokens, image_size=image_size),
        recipe=RecipeInfo(steps=4, guidance_scale=1.5, max_new_tokens=12),
        features={"clip": None, "face": None},
        provenance={"kind": "random", "seed": seed},
    )
    write_bundle_info(out, info)
    return out
