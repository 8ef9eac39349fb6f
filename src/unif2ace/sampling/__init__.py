"""Samplers outside the network: MaskGIT and ancestral image decoding with CFG, batched text decoding."""

from unif2ace.sampling.ancestral import ancestral_sample, unmask_probabilities
from unif2ace.sampling.common import guided_logits, resolve_generator
from unif2ace.sampling.interfaces import DecodeStepFn, ImageLogitsFn
from unif2ace.sampling.maskgit import (
    MaskGITScheduler,
    MaskGITStepOutput,
    gumbel_noise,
    mask_by_random_topk,
    maskgit_sample,
)
from unif2ace.sampling.text import TextDecodeOutput, decode_text, filter_logits, select_next_token

__all__ = [
    "DecodeStepFn",
    "ImageLogitsFn",
    "MaskGITScheduler",
    "MaskGITStepOutput",
    "TextDecodeOutput",
    "ancestral_sample",
    "decode_text",
    "filter_logits",
    "guided_logits",
    "gumbel_noise",
    "mask_by_random_topk",
    "maskgit_sample",
    "resolve_generator",
    "select_next_token",
    "unmask_probabilities",
]
