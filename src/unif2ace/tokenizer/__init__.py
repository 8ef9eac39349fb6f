"""Text tokenizers, Show-o prompt layouts, and (``tokenizer.vq``) the LFQ image tokenizer."""

from unif2ace.tokenizer.prompting import SYSTEM_PROMPT, PromptBatch, Prompter
from unif2ace.tokenizer.text import (
    BPETokenizer,
    ByteTokenizer,
    TextTokenizer,
    TiktokenGPT2Tokenizer,
    WordLevelTokenizer,
    load_text_tokenizer,
)

__all__ = [
    "SYSTEM_PROMPT",
    "BPETokenizer",
    "ByteTokenizer",
    "PromptBatch",
    "Prompter",
    "TextTokenizer",
    "TiktokenGPT2Tokenizer",
    "WordLevelTokenizer",
    "load_text_tokenizer",
]
