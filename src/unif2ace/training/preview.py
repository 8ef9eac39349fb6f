"""Training previews: faces generated for fixed prompts and captions of fixed validation faces.

:func:`make_preview_fn` returns the ``preview_fn(model, step, out_dir)`` the trainer calls every
``train.preview_every`` steps. It needs only the model's forward contract and the training layouts (no inference
engine): image codes are sampled with MaskGIT + CFG (:func:`~unif2ace.sampling.maskgit.maskgit_sample`, spec §2.7)
from full forward passes over T2I rows, and captions are decoded greedily by re-running the MMU prefix
(:func:`~unif2ace.sampling.text.decode_text` with a "cache" that simply holds the ids so far). Codes become pixels
through the VQ tokenizer recorded in the token shards' provenance; without it the sampled codes are saved instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unif2ace.config.model import GEN, UND
from unif2ace.losses.corruption import IGNORE_INDEX
from unif2ace.model.interfaces import RoutingContext
from unif2ace.sampling.maskgit import maskgit_sample
from unif2ace.sampling.text import decode_text
from unif2ace.training.batching import BatchBuilder
from unif2ace.training.distributed import get_logger
from unif2ace.utils.io import atomic_write_json, save_tensors

__all__ = ["make_preview_fn"]

log = get_logger()


def _forward(
    model: nn.Module,
    builder: BatchBuilder,
    ids: Tensor,
    image_mask: Tensor,
    pool: Tensor,
    group: int,
    image_ids: list[str | None],
) -> Tensor:
    """Logits ``(B, L, V)`` of rows of one task group (T2I rows if ``group == GEN``)."""
    lay = builder.layouts
    device = ids.device
    ctx = RoutingContext(
        group_ids=torch.full((ids.shape[0],), group, dtype=torch.long, device=device),
        valid=ids != lay.pad,
        image_mask=image_mask,
        pool_mask=pool,
        features={k: v.to(device) for k, v in builder.features_for(image_ids).items()},
        generator=torch.Generator(device=device).manual_seed(0),
    )
    num_t2i = ids.shape[0] if group == GEN else 0
    mask = lay.attention_mask(ids.cpu(), image_mask.cpu(), num_t2i).to(device)  # (B, 1, L, L)
    pos = torch.arange(ids.shape[1], device=device).expand_as(ids)
    return model(input_ids=ids, attention_mask=mask, position_ids=pos, ctx=ctx).logits


def image_logits_fn(
    model: nn.Module, builder: BatchBuilder, prompts: list[str], device: torch.device
) -> Callable[[Tensor, bool], Tensor]:
    """:class:`~unif2ace.sampling.interfaces.ImageLogitsFn` over T2I rows (``cond=False``: the empty prompt)."""
    lay, vocab = builder.layouts, builder.layouts.vocab
    blank = torch.zeros(lay.num_image_tokens, dtype=torch.long)
    rows = {c: [lay.t2i(p if c else "", blank) for p in prompts] for c in (True, False)}
    stacked = {
        c: [torch.stack([getattr(r, f) for r in rows[c]]).to(device) for f in ("input_ids", "image_mask", "pool_mask")]
        for c in rows
    }

    def fn(image_ids: Tensor, cond: bool) -> Tensor:
        base, img_mask, pool = stacked[cond]
        codes = torch.where(image_ids >= vocab.codebook_size, vocab.mask_id, image_ids + vocab.image_offset)
        ids = base.masked_scatter(img_mask, codes)  # (B, L)
        logits = _forward(model, builder, ids, img_mask, pool, GEN, [None] * len(prompts))
        start = vocab.image_offset
        img_logits = logits[img_mask].view(len(prompts), lay.num_image_tokens, -1)  # (B, N, V)
        return img_logits[..., start : start + vocab.codebook_size].float()

    return fn


def caption_ids(
    model: nn.Module,
    builder: BatchBuilder,
    codes: Tensor,
    image_id: str | None,
    question: str,
    max_new_tokens: int,
    device: torch.device,
) -> list[int]:
    """Greedy answer ids to ``question`` about one image ``codes`` ``(N,)`` (stops at ``<eos>``)."""
    lay, vocab = builder.layouts, builder.layouts.vocab
    layout = lay.mmu(codes, [(question, "")])
    supervised = (layout.labels != IGNORE_INDEX).nonzero()
    prompt_len = int(supervised[0]) if len(supervised) else int(layout.valid.sum())  # everything before the answer
    prompt = layout.input_ids[:prompt_len][None].to(device)
    image_mask, pool = layout.image_mask[None].to(device), layout.pool_mask[None].to(device)

    def step(ids: Tensor, cache: Any) -> tuple[Tensor, Tensor]:
        seq = ids if cache is None else torch.cat([cache, ids], dim=1)  # (1, T)
        n = seq.shape[1]
        logits = _forward(model, builder, seq, image_mask[:, :n], pool[:, :n], UND, [image_id])
        return logits[:, -1, : vocab.llm_vocab_size].float(), seq

    room = lay.seq_len - prompt_len
    out = decode_text(
        step, prompt, max_new_tokens=max(1, min(max_new_tokens, room)), stop_ids=[vocab.eos_id], pad_id=vocab.eos_id
    )
    return out.ids[0, : int(out.lengths[0])].tolist()


def make_preview_fn(
    builder: BatchBuilder,
    prompts: list[str],
    faces: list[int],
    steps: int = 8,
    guidance_scale: float = 2.0,
    max_new_tokens: int = 48,
    decoder: Any | None = None,
    seed: int = 0,
) -> Callable[[nn.Module, int, Path], Path]:
    """The trainer's ``preview_fn(model, step, out_dir)``.

    Writes ``out_dir/step-XXXXXXX/faces.png`` (or ``codes.safetensors`` without a decoder) for ``prompts`` and
    ``captions.json`` with the model's description of each validation face (dataset indices ``faces``) next to
    its reference caption.

    Args:
        builder: the training batch builder (layouts, dataset, features).
        prompts: fixed generation prompts.
        faces: fixed validation faces (their pre-computed codes and reference captions).
        steps: MaskGIT steps.
        guidance_scale: CFG scale ``w``.
        max_new_tokens: caption length cap.
        decoder: VQ model with ``decode(codes) -> (B, 3, H, W)`` in ``[-1, 1]`` (None = save codes only).
        seed: sampling seed (the same every preview, so grids are comparable over training).
    """

    def preview(model: nn.Module, step: int, out_dir: Path) -> Path:
        device = next(model.parameters()).device
        folder = Path(out_dir) / f"step-{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        vocab = builder.layouts.vocab
        if prompts:
            fn = image_logits_fn(model, builder, prompts, device)
            codes = maskgit_sample(
                fn,
                builder.layouts.num_image_tokens,
                len(prompts),
                vocab.codebook_size,
                steps,
                guidance_scale=guidance_scale,
                generator=seed,
                device=device,
            )
            _save_faces(codes, decoder, folder)
        samples = faces
        question = builder.cfg.data.describe_prompt
        entries = [
            {
                "id": s.id,
                "reference": s.caption,
                "generated": builder.layouts.decode(
                    caption_ids(model, builder, s.codes, s.id, question, max_new_tokens, device)
                ),
            }
            for s in samples
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
