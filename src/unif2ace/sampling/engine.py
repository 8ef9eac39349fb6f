"""Token-level inference engine: adapts the transformer to the samplers' callables (STYLE habit 8).

The engine deals only in ids. It computes no more than the samplers need (issue 7 "compute only what is used"):

* **T2I** — the text prefix (``[pad]* <|t2i|> <bos> text <eos>``) is run once with a KV cache; every MaskGIT step
  then runs only the ``<|soi|> image <|eoi|>`` segment against that cache, and scores only the N image
  positions against the codebook slice of ``lm_head``. This is exact: text rows are causal and never attend to
  image tokens, and the sequence-level router pools over the prompt only (``ctx.pool_mask``), so its decisions
  are fixed for the whole run. Leading columns that are padding in every row are dropped (positions are kept,
  so the function is unchanged).
* **MMU** — prompts are left-padded, the prompt runs once with a KV cache, then one token per step; logits only
  for the last position and only over the text vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from unif2ace.config.model import GEN, UND, VocabConfig
from unif2ace.model.interfaces import RoutingContext
from unif2ace.model.kv_cache import KVCache
from unif2ace.model.masks import decode_mask, omni_attention_mask
from unif2ace.sampling.ancestral import ancestral_sample
from unif2ace.sampling.maskgit import MaskGITScheduler, maskgit_sample
from unif2ace.sampling.text import TextDecodeOutput, decode_text

SAMPLERS = ("maskgit", "ancestral")


def _trim_leading_pads(ids: Tensor, pad_id: int) -> tuple[Tensor, int]:
    """Drop the leading columns that are padding in every row; return (ids, number dropped)."""
    non_pad = (ids != pad_id).any(0)
    first = int(non_pad.int().argmax()) if bool(non_pad.any()) else ids.shape[1]
    return ids[:, first:], first


class Engine:
    """KV-cached T2I sampling and text decoding for one model.

    Args:
        model: a :class:`~unif2ace.model.Unif2aceTransformer` (in eval mode).
        vocab: the model's id layout.
    """

    def __init__(self, model: torch.nn.Module, vocab: VocabConfig) -> None:
        self.model = model
        self.vocab = vocab

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    # ---------------------------------------------------------------- T2I
    def _image_branch(
        self,
        prefix_ids: Tensor,
        num_tokens: int,
        features: dict[str, Tensor] | None,
        generator: torch.Generator | None,
    ) -> Callable[[Tensor], Tensor]:
        """Run the text prefix once; return ``codes (B, N) -> codebook logits (B, N, C)`` for that prefix."""
        v = self.vocab
        soi, eoi = v.special_id("<|soi|>"), v.special_id("<|eoi|>")
        prefix, offset = _trim_leading_pads(prefix_ids, v.pad_id)
        b, p = prefix.shape
        dev = prefix.device
        template = torch.cat(
            [
                prefix,
                torch.full((b, 1), soi, device=dev),
                torch.full((b, num_tokens), v.mask_id, device=dev),
                torch.full((b, 1), eoi, device=dev),
            ],
            dim=1,
        )  # (B, P + N + 2): the mask depends only on pad/soi/eoi positions
        full_mask = omni_attention_mask(template, v.pad_id, soi, eoi, rm_pad_in_image=True)  # (B, 1, L, L)
        routing_cache: dict[int, dict[str, Tensor]] = {}
        valid = prefix != v.pad_id
        ctx = RoutingContext(
            group_ids=torch.full((b,), GEN, device=dev),
            valid=valid,
            image_mask=torch.zeros_like(valid),
            pool_mask=valid,
            features=dict(features or {}),
            generator=generator,
            routing_cache=routing_cache,
        )
        positions = offset + torch.arange(p, device=dev).expand(b, p)
        cache = self.model(
            prefix,
            attention_mask=full_mask[:, :, :p, :p],
            position_ids=positions,
            ctx=ctx,
            use_cache=True,
            return_logits=False,
        ).past_key_values
        seg_len = num_tokens + 2
        seg_pos = offset + p + torch.arange(seg_len, device=dev).expand(b, seg_len)
        seg_mask = full_mask[:, :, p:, :]
        image_mask = torch.zeros(b, seg_len, dtype=torch.bool, device=dev)
        image_mask[:, 1:-1] = True
        logit_pos = torch.arange(1, num_tokens + 1, device=dev).expand(b, num_tokens)
        vocab_range = (v.image_offset, v.image_offset + v.codebook_size)

        def logits_for(codes: Tensor) -> Tensor:
            ids = torch.where(codes == v.codebook_size, v.mask_id, codes + v.image_offset)  # (B, N)
            seg = torch.cat([template[:, p : p + 1], ids, template[:, -1:]], dim=1)  # (B, N + 2)
            seg_ctx = RoutingContext(
                group_ids=ctx.group_ids,
                valid=torch.ones_like(image_mask),
                image_mask=image_mask,
                pool_mask=torch.zeros_like(image_mask),
                features=ctx.features,
                generator=generator,
                routing_cache=routing_cache,
            )
            out = self.model(
                seg,
                attention_mask=seg_mask,
                position_ids=seg_pos,
                ctx=seg_ctx,
                past_key_values=cache,
                logits_positions=logit_pos,
                vocab_range=vocab_range,
            )
            return out.logits.float()

        return logits_for

    @torch.no_grad()
    def generate_image_tokens(
        self,
        prefix_ids: Tensor,
        num_tokens: int,
        *,
        uncond_prefix_ids: Tensor | None = None,
        steps: int = 16,
        guidance_scale: float = 0.0,
        generator: torch.Generator | None = None,
        known_codes: Tensor | None = None,
        sampler: str = "maskgit",
        scheduler: MaskGITScheduler | None = None,
        features: dict[str, Tensor] | None = None,
        callback: Callable[[int, int, Tensor], Any] | None = None,
    ) -> Tensor:
        """Sample ``(B, N)`` image codes for T2I text blocks.

        Args:
            prefix_ids: ``(B, P)`` T2I text blocks (left-padded ``[pad]* <|t2i|> <bos> text <eos>``).
            num_tokens: ``N`` image tokens.
            uncond_prefix_ids: ``(B, P')`` unconditional / negative-prompt blocks (needed when guidance > 0).
            steps: sampling steps.
            guidance_scale: CFG ``w``: logits = (1 + w) cond − w uncond.
            generator: RNG for sampling (and the noise expert).
            known_codes: optional ``(B, N)`` codes, ``codebook_size`` where unknown (inpainting / editing).
            sampler: ``"maskgit"`` or ``"ancestral"``.
            scheduler: MaskGIT scheduler (schedule, temperature) for ``sampler="maskgit"``.
            features: sequence-MoE features (rarely used for generation).
            callback: ``callback(step, total, codes)`` after each step.

        Returns:
            ``(B, N)`` long codes in ``[0, codebook_size)``.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
        if guidance_scale > 0 and uncond_prefix_ids is None:
            raise ValueError("guidance_scale > 0 needs uncond_prefix_ids (an empty or negative prompt)")
        cond = self._image_branch(prefix_ids, num_tokens, features, generator)
        uncond = self._image_branch(uncond_prefix_ids, num_tokens, features, generator) if guidance_scale > 0 else None

        def logits_fn(codes: Tensor, is_cond: bool) -> Tensor:
            return cond(codes) if is_cond else uncond(codes)

        common = dict(
            num_tokens=num_tokens,
            batch=prefix_ids.shape[0],
            codebook_size=self.vocab.codebook_size,
            steps=steps,
            guidance_scale=guidance_scale,
            generator=generator,
            known_tokens=known_codes,
            callback=callback,
            device=prefix_ids.device,
        )
        if sampler == "maskgit":
            return maskgit_sample(logits_fn, scheduler=scheduler, **common)
        return ancestral_sample(logits_fn, **common)

    # ---------------------------------------------------------------- MMU
    @torch.no_grad()
    def generate_text(
        self,
        prompt_ids: Tensor,
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        features: dict[str, Tensor] | None = None,
        stop_ids: tuple[int, ...] | None = None,
        on_token: Callable[[Tensor], Any] | None = None,
    ) -> TextDecodeOutput:
        """Decode answers for left-padded MMU prompts ``<|mmu|> <|soi|> image <|eoi|> <bos> ... ASSISTANT:``.

        Args:
            prompt_ids: ``(B, T)`` prompts, left-padded with ``pad_id``.
            max_new_tokens: token budget per row.
            temperature: 0 = greedy, > 0 = sampling.
            top_k: optional top-k filter.
            top_p: optional nucleus filter.
            generator: RNG for sampling.
            features: sequence-MoE features of the images (``"clip"``, ``"face"``).
            stop_ids: ids ending a row (default: eos).
            on_token: optional ``fn((B,) ids)`` called after every decoding step (streaming).

        Returns:
            :class:`TextDecodeOutput` (ids ``(B, max_new_tokens)``, lengths).
        """
        v = self.vocab
        b, t = prompt_ids.shape
        dev = prompt_ids.device
        valid = prompt_ids != v.pad_id
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)  # left padding does not shift positions
        soi, eoi = prompt_ids == v.special_id("<|soi|>"), prompt_ids == v.special_id("<|eoi|>")
        if not bool(eoi.any(1).all()):
            raise ValueError("every MMU prompt needs an <|eoi|> token (use Prompter.chat_prompt)")
        seen_eoi = eoi.long().cumsum(1) - eoi.long()  # 0 up to and including eoi
        visible = (seen_eoi == 0) & valid  # task token + image block: bidirectional
        image_mask = (soi.long().cumsum(1) > 0) & (seen_eoi == 0) & ~soi & ~eoi
        routing_cache: dict[int, dict[str, Tensor]] = {}
        state = {"key_valid": valid, "next_pos": positions[:, -1] + 1}
        group = torch.full((b,), UND, device=dev)

        def step(ids: Tensor, cache: KVCache | None) -> tuple[Tensor, KVCache]:
            if cache is None:
                mask = decode_mask(valid, t, visible_prefix=visible)
                ctx = RoutingContext(
                    group_ids=group,
                    valid=valid,
                    image_mask=image_mask,
                    pool_mask=visible,
                    features=dict(features or {}),
                    generator=generator,
                    routing_cache=routing_cache,
                )
                pos = positions
            else:
                state["key_valid"] = torch.cat([state["key_valid"], torch.ones(b, 1, dtype=torch.bool, device=dev)], 1)
                mask = decode_mask(state["key_valid"], 1)
                none = torch.zeros(b, 1, dtype=torch.bool, device=dev)
                ctx = RoutingContext(
                    group_ids=group,
                    valid=~none,
                    image_mask=none,
                    pool_mask=none,
                    features=dict(features or {}),
                    generator=generator,
                    routing_cache=routing_cache,
                )
                pos = state["next_pos"][:, None]
                state["next_pos"] = state["next_pos"] + 1
            last = torch.full((b, 1), ids.shape[1] - 1, device=dev)
            out = self.model(
                ids,
                attention_mask=mask,
                position_ids=pos,
                ctx=ctx,
                past_key_values=cache,
                use_cache=True,
                logits_positions=last,
                vocab_range=(0, v.llm_vocab_size),
            )
            return out.logits[:, -1].float(), out.past_key_values

        stops = (v.eos_id,) if stop_ids is None else stop_ids
        return decode_text(
            step,
            prompt_ids,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_ids=stops,
            pad_id=v.pad_id,
            generator=generator,
            on_token=on_token,
        )
