"""Model configuration: vocabulary layout, transformer sizes, token-level and sequence-level MoE.

References: spec §2 (Show-o base model, [SHOWO]), §3.2 (grouped token-level MoE), §3.3 (grouped
sequence-level MoE). Named sizes are builder functions in :mod:`unif2ace.model.presets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unif2ace.config.base import check

#: Show-o's special tokens after ``[PAD]``, in the order ``UniversalPrompting`` adds them.
SHOWO_SPECIAL_TOKENS = (
    "<|soi|>",
    "<|eoi|>",
    "<|sov|>",
    "<|eov|>",
    "<|t2i|>",
    "<|mmu|>",
    "<|t2v|>",
    "<|v2v|>",
    "<|lvg|>",
)

#: Sequence-level expert kinds (spec §3.3).
SEQ_EXPERT_KINDS = ("copy", "zero", "noise", "clip", "face")

#: Task groups, index = group id used throughout (``group_ids`` tensors).
GROUPS = ("und", "gen")
UND, GEN = 0, 1


@dataclass
class VocabConfig:
    """Unified id space shared by text tokens, special tokens and image codes (Show-o layout).

    Layout: ``[0, llm_vocab_size)`` text ids; ``llm_vocab_size + 0`` = ``<|pad|>``; then the 9 Show-o specials
    (``<|soi|>`` = +1 ... ``<|lvg|>`` = +9); image code ``c`` -> ``c + llm_vocab_size + num_new_special_tokens``;
    mask id = ``vocab_size - 1``.
    """

    llm_vocab_size: int = 300
    """Length of the text tokenizer (Show-o: 50295 for phi-1.5)."""
    codebook_size: int = 64
    """Number of image codes of the VQ tokenizer (Show-o: 8192)."""
    bos_id: int = 256
    """Begin-of-sequence text id (Show-o: ``<|endoftext|>`` = 50256)."""
    eos_id: int = 256
    """End-of-sequence text id (equal to bos in Show-o)."""
    num_new_special_tokens: int = 10
    """``[PAD]`` + 9 specials; keep 10 for Show-o compatibility."""

    def __post_init__(self) -> None:
        check(self.llm_vocab_size > 0, "vocab.llm_vocab_size", "must be positive")
        check(self.codebook_size > 1, "vocab.codebook_size", "must be at least 2")
        check(self.num_new_special_tokens >= 10, "vocab.num_new_special_tokens", "needs room for [PAD] + 9 specials")
        for name in ("bos_id", "eos_id"):
            value = getattr(self, name)
            check(0 <= value < self.llm_vocab_size, f"vocab.{name}", f"{value} is outside the text id range")

    @property
    def pad_id(self) -> int:
        """Id of ``<|pad|>``."""
        return self.llm_vocab_size

    def special_id(self, token: str) -> int:
        """Id of a Show-o special token such as ``"<|soi|>"``."""
        if token in ("<|pad|>", "[PAD]"):
            return self.pad_id
        if token not in SHOWO_SPECIAL_TOKENS:
            raise KeyError(f"unknown special token {token!r}; known: {', '.join(SHOWO_SPECIAL_TOKENS)}")
        return self.llm_vocab_size + 1 + SHOWO_SPECIAL_TOKENS.index(token)

    @property
    def image_offset(self) -> int:
        """Id of image code 0."""
        return self.llm_vocab_size + self.num_new_special_tokens

    @property
    def mask_id(self) -> int:
        """Id of the image mask token (the last row of the embedding)."""
        return self.image_offset + self.codebook_size

    @property
    def vocab_size(self) -> int:
        """Embedding rows and full logit width."""
        return self.mask_id + 1


@dataclass
class TokenMoEConfig:
    """Grouped token-level MoE (spec §3.2): per group one shared expert + ``num_routed`` routed experts."""

    enabled: bool = False
    """False = the dense Phi MLP (Show-o); True = grouped MoE in every layer."""
    num_routed: int = 8
    """Routed experts per group."""
    num_shared: int = 1
    """Always-on shared experts per group (0 allowed)."""
    top_k: int = 2
    """Routed experts per token."""
    routed_intermediate: int = 128
    """Hidden width of each routed expert."""
    shared_intermediate: int = 256
    """Hidden width of each shared expert."""
    balance_coef_und: float = 0.01
    """lambda of the understanding group's balance loss."""
    balance_coef_gen: float = 0.01
    """lambda of the generation group's balance loss."""
    renormalize: bool = False
    """Renormalise the top-k gate values to sum to 1."""

    def __post_init__(self) -> None:
        check(self.num_routed >= 1, "token_moe.num_routed", "must be >= 1")
        check(self.num_shared >= 0, "token_moe.num_shared", "must be >= 0")
        check(
            1 <= self.top_k <= self.num_routed,
            "token_moe.top_k",
            f"{self.top_k} must be between 1 and num_routed={self.num_routed}",
        )
        check(self.routed_intermediate > 0, "token_moe.routed_intermediate", "must be positive")
        check(self.shared_intermediate > 0, "token_moe.shared_intermediate", "must be positive")
        check(self.balance_coef_und >= 0 and self.balance_coef_gen >= 0, "token_moe.balance_coef_*", "must be >= 0")


@dataclass
class ResamplerConfig:
    """Perceiver resampler S(.) turning encoder features into model-width tokens (IP-Adapter form)."""

    dim: int = 64
    """Inner width of the resampler."""
    depth: int = 2
    """Number of (PerceiverAttention + FFN) layers."""
    heads: int = 4
    """Attention heads."""
    dim_head: int = 16
    """Width of each head."""
    num_queries: int = 16
    """Learned query tokens (= image tokens for placement 'image')."""
    ff_mult: int = 4
    """FFN expansion."""

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "heads", "dim_head", "num_queries", "ff_mult"):
            check(getattr(self, name) > 0, f"seq_moe.resampler.{name}", "must be positive")


@dataclass
class SeqMoEConfig:
    """Grouped sequence-level MoE (spec §3.3): per group a list of expert kinds, top-k per sequence."""

    enabled: bool = False
    """Append a sequence-level MoE after every block."""
    und_experts: list[str] = field(default_factory=lambda: ["clip", "face", "copy", "copy"])
    """Expert kinds of the understanding group."""
    gen_experts: list[str] = field(default_factory=lambda: ["copy", "zero", "noise", "copy"])
    """Expert kinds of the generation group."""
    top_k: int = 2
    """Experts chosen per sequence."""
    balance_coef: float = 0.0
    """lambda of a light sequence-level balance loss (0 = off)."""
    placement: str = "image"
    """'image': resampled tokens are added at image positions; 'broadcast': pooled vector to all positions."""
    feature_dims: dict[str, int] = field(default_factory=lambda: {"clip": 64, "face": 128})
    """Embedding width of each feature encoder (semantic 'clip', identity 'face')."""
    noise_dim: int = 128
    """Width of the Gaussian noise fed to the noise expert's resampler."""
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    """Resampler shared across layers (one per feature kind)."""

    def __post_init__(self) -> None:
        for name in ("und_experts", "gen_experts"):
            kinds = getattr(self, name)
            check(len(kinds) >= 1, f"seq_moe.{name}", "needs at least one expert")
            for kind in kinds:
                check(
                    kind in SEQ_EXPERT_KINDS,
                    f"seq_moe.{name}",
                    f"unknown expert kind {kind!r}; choose from {', '.join(SEQ_EXPERT_KINDS)}",
                )
            check(
                1 <= self.top_k <= len(kinds),
                "seq_moe.top_k",
                f"{self.top_k} exceeds the {len(kinds)} experts of {name}",
            )
        check(self.placement in ("image", "broadcast"), "seq_moe.placement", "must be 'image' or 'broadcast'")
        for kind in ("clip", "face"):
            if kind in self.und_experts or kind in self.gen_experts:
                check(kind in self.feature_dims, "seq_moe.feature_dims", f"missing the width of the {kind!r} features")


@dataclass
class ModelConfig:
    """Unified transformer (Phi-style block as Show-o runs it) + optional grouped MoEs."""

    vocab: VocabConfig = field(default_factory=VocabConfig)
    """Unified id space."""
    hidden_size: int = 64
    """Model width d."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (head_dim = hidden_size / num_heads)."""
    intermediate_size: int = 128
    """Dense MLP width (Phi: 4 d)."""
    partial_rotary_factor: float = 0.5
    """Fraction of each head's dims that get RoPE (Phi: 0.5)."""
    rope_theta: float = 10000.0
    """RoPE base."""
    layer_norm_eps: float = 1e-5
    """LayerNorm epsilon."""
    qk_layernorm: bool = True
    """Per-head LayerNorm on q and k before RoPE (forced on by Show-o)."""
    max_position_embeddings: int = 2048
    """Longest sequence."""
    block_form: str = "parallel"
    """'parallel' (Phi/Show-o: x + attn(LN x) + mlp(LN x)) or 'sequential' (the UniF²ace figure)."""
    dropout: float = 0.0
    """Residual / attention dropout."""
    token_moe: TokenMoEConfig = field(default_factory=TokenMoEConfig)
    """Grouped token-level MoE (disabled = dense)."""
    seq_moe: SeqMoEConfig = field(default_factory=SeqMoEConfig)
    """Grouped sequence-level MoE (disabled = none)."""
    gradient_checkpointing: bool = False
    """Recompute block activations in backward."""

    def __post_init__(self) -> None:
        check(self.hidden_size > 0, "model.hidden_size", "must be positive")
        check(self.num_layers > 0, "model.num_layers", "must be positive")
        check(self.num_heads > 0, "model.num_heads", "must be positive")
        check(
            self.hidden_size % self.num_heads == 0,
            "model.num_heads",
            f"head dim: hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}",
        )
        rot = int(self.head_dim * self.partial_rotary_factor)
        check(
            0.0 <= self.partial_rotary_factor <= 1.0 and rot % 2 == 0,
            "model.partial_rotary_factor",
            f"must be in [0, 1] and give an even rotary dim (got {rot} of head_dim {self.head_dim})",
        )
        check(self.intermediate_size > 0, "model.intermediate_size", "must be positive")
        check(self.block_form in ("parallel", "sequential"), "model.block_form", "must be 'parallel' or 'sequential'")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    @property
    def rotary_dim(self) -> int:
        """Leading dims of each head that receive RoPE."""
        return int(self.head_dim * self.partial_rotary_factor)
