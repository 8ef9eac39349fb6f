"""LFQ image tokenizer (MAGVIT-v2 layout): quantiser, encoder/decoder, model, checkpoints. See docs/tokenizer.md."""

from unif2ace.tokenizer.vq.checkpoint import load_tokenizer, save_tokenizer
from unif2ace.tokenizer.vq.config import ConvStackConfig, LFQConfig, VQConfig, VQModelConfig
from unif2ace.tokenizer.vq.lfq import LFQOutput, LFQuantizer, bits_to_codes, codes_to_bits
from unif2ace.tokenizer.vq.model import VQModel, VQOutput

__all__ = [
    "ConvStackConfig",
    "LFQConfig",
    "LFQOutput",
    "LFQuantizer",
    "VQConfig",
    "VQModel",
    "VQModelConfig",
    "VQOutput",
    "bits_to_codes",
    "codes_to_bits",
    "load_tokenizer",
    "save_tokenizer",
]
