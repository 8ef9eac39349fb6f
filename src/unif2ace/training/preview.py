"""Training previews: faces generated for fixed prompts and captions of fixed validation faces.

:func:`make_preview_fn` returns the ``preview_fn(model, step, out_dir)`` the trainer calls every
``train.preview_every`` steps. Prompts are laid out by the :class:`~unif2ace.tokenizer.prompting.Prompter` and run
through the inference :class:`~unif2ace.sampling.engine.Engine` (KV-cached MaskGIT + CFG for faces, spec §2.7;
greedy KV-cached decoding for captions), i.e. exactly what users get from the trained checkpoint. Codes become
pixels through the VQ tokenizer recorded in the token shards' provenance; without it the sampled codes are saved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unif2ace.data.dataset import FaceSample
from unif2ace.sampling.engine import Engine
from unif2ace.training.batching import BatchBuilder
from unif2ace.training.distributed import get_logger
from unif2ace.utils.io import atomic_write_json, save_tensors

__all__ = ["generate_captions", "generate_faces", "load_preview_decoder", "make_preview_fn"]

log = get_logger()


def _features(builder: BatchBuilder, ids: list[str | None], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in builder.features_for(ids).items()}


def generate_faces(
    model: nn.Module, builder: BatchBuilder, prompts: list[str], steps: int, guidance_scale: float, seed: int
) -> Tensor:
    """``(B, N)`` image codes for ``prompts`` (MaskGIT + CFG against the empty prompt)."""
    device = next(model.parameters()).device
    prompter, m = builder.layouts.prompter, builder.layouts.max_text_len
    prefix = prompter.t2i_gen(prompts).input_ids[:, : m + 1].to(device)  # (B, M + 1) text blocks
    uncond = prompter.t2i_gen([""] * len(prompts)).input_ids[:, : m + 1].to(device)
    engine = Engine(model, builder.layouts.vocab)
    gen = torch.Generator(device=device).manual_seed(seed)
    return engine.generate_image_tokens(
        prefix,
        builder.layouts.num_image_tokens,
        uncond_prefix_ids=uncond,
        steps=steps,
        guidance_scale=guidance_scale,
        generator=gen,
        features=_features(builder, [None] * len(prompts), device),
    )


def generate_captions(
    model: nn.Module, builder: BatchBuilder, faces: list[FaceSample], question: str, max_new_tokens: int
) -> list[str]:
    """Greedy answers to ``question`` for each face (its pre-computed codes and features).

    Raises:
        ValueError: the prompt leaves no room under ``model.max_position_embeddings``.
    """
    device = next(model.parameters()).device
    vocab = builder.layouts.vocab
    codes = torch.stack([f.codes.long() for f in faces]) + vocab.image_offset  # (B, N)
    prompt = builder.layouts.prompter.chat_prompt(codes, [question] * len(faces)).input_ids.to(device)
    limit = builder.cfg.model.max_position_embeddings
    if prompt.shape[1] >= limit:
        raise ValueError(
            f"the caption prompt has {prompt.shape[1]} tokens, no room under model.max_position_embeddings={limit}"
        )
    out = Engine(model, vocab).generate_text(
        prompt,
        max_new_tokens=min(max_new_tokens, limit - prompt.shape[1]),
        features=_features(builder, [f.id for f in faces], device),
    )
    return [builder.layouts.decode(out.ids[i, : int(out.lengths[i])].tolist()) for i in range(len(faces))]


def make_preview_fn(
    builder: BatchBuilder,
    prompts: list[str],
    faces: list[FaceSample],
    steps: int = 8,
    guidance_scale: float = 2.0,
    max_new_tokens: int = 48,
    decoder: Any | None = None,
    seed: int = 0,
) -> Callable[[nn.Module, int, Path], Path]:
    """The trainer's ``preview_fn(model, step, out_dir)``.

    Writes ``out_dir/step-XXXXXXX/faces.png`` (or ``codes.safetensors`` without a decoder) for ``prompts`` and
    ``captions.json`` with the model's description of each validation face next to its reference caption.

    Args:
        builder: the training batch builder (layouts, features).
        prompts: fixed generation prompts.
        faces: fixed validation faces (their pre-computed codes and reference captions).
        steps: MaskGIT steps.
        guidance_scale: CFG scale ``w``.
        max_new_tokens: caption length cap.
        decoder: VQ model with ``decode(codes) -> (B, 3, H, W)`` in ``[-1, 1]`` (None = save codes only).
        seed: sampling seed (the same every preview, so grids are comparable over training).
    """

    def preview(model: nn.Module, step: int, out_dir: Path) -> Path:
        folder = Path(out_dir) / f"step-{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        if prompts:
            _save_faces(generate_faces(model, builder, prompts, steps, guidance_scale, seed), decoder, folder)
        question = builder.cfg.data.describe_prompt
        try:
            captions = generate_captions(model, builder, faces, question, max_new_tokens) if faces else []
        except ValueError as err:  # a tiny text budget: previews keep the faces, captions are skipped
            log.warning("preview captions skipped: %s", err)
            faces_used: list[FaceSample] = []
            captions = []
        else:
            faces_used = faces
        entries = [
            {"id": f.id, "reference": f.caption, "generated": c} for f, c in zip(faces_used, captions, strict=True)
        ]
        atomic_write_json(folder / "captions.json", {"step": step, "prompts": prompts, "captions": entries})
        return folder

    return preview


def _save_faces(codes: Tensor, decoder: Any | None, folder: Path) -> None:
    if decoder is None:
        save_tensors(folder / "codes.safetensors", {"codes": codes.cpu()})
        return
    from unif2ace.utils.images import from_tensor, image_grid

    with torch.no_grad():
        pixels = decoder.decode(codes.to(next(decoder.parameters()).device)).clamp(-1, 1).cpu()  # (B, 3, H, W)
    image_grid([[from_tensor(p) for p in pixels]]).save(folder / "faces.png")


def load_preview_decoder(tokens_path: str | Path) -> Any | None:
    """The VQ tokenizer named in the token shards' ``provenance.json`` (None if it is not available)."""
    prov = Path(tokens_path) / "provenance.json"
    try:
        folder = json.loads(prov.read_text())["tokenizer"]["folder"]
        from unif2ace.tokenizer.vq.checkpoint import load_tokenizer

        return load_tokenizer(folder)
    except (OSError, KeyError, ValueError, TypeError) as err:
        log.warning("previews save codes only: no VQ tokenizer from %s (%s)", prov, str(err).splitlines()[0])
        return None
