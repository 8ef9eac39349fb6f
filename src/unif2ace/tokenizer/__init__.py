"""Text tokenizers, Show-o prompt layouts, and (``tokenizer.vq``) the LFQ image tokenizer."""

from unif2ace.tokenizer.prompting import DESCRIBE_PROMPT, SYSTEM_PROMPT, PromptBatch, Prompter
from unif2ace.tokenizer.text import (
    BPETokenizer,
    ByteTokenizer,
    TextTokenizer,
    TiktokenGPT2Tokenizer,
    WordLevelTokenizer,
    extract_gpt2_ranks,
    find_gpt2_ranks_file,
    load_text_tokenizer,
)

__all__ = [
    "DESCRIBE_PROMPT",
    "SYSTEM_PROMPT",
    "BPETokenizer",
    "ByteTokenizer",
    "PromptBatch",
    "Prompter",
    "TextTokenizer",
    "TiktokenGPT2Tokenizer",
    "WordLevelTokenizer",
    "extract_gpt2_ranks",
    "find_gpt2_ranks_file",
    "load_text_tokenizer",
]
