"""Training configuration: data, optimisation, loss switches and the staged recipe; the root config tree.

References: spec §2.6 (Show-o training hyper-parameters: AdamW (0.9, 0.999), wd 0.01, cosine, warm-up, CFG
dropout 0.1), §4.5 (D3Diff = masked CE + alpha * score term, alpha = 0.01), §6 (recipe: mixed T2I + MMU batches,
separate learning rate for new MoE / resampler parameters, optional two-stage schedule). A YAML recipe is a
serialised :class:`Unif2aceConfig`; ``unif2ace train`` runs its ``stages`` in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unif2ace.config.base import check
from unif2ace.config.model import ModelConfig

#: Loss modes of the D3Diff ablation (spec §8.4): both terms, only the masked CE, only the score term.
LOSS_MODES = ("d3diff", "mask_only", "score_only")
#: Autocast policies; "auto" = bf16 on a GPU that supports it (else fp16), fp32 on CPU.
PRECISIONS = ("auto", "no", "bf16", "fp16")
#: Learning-rate schedules after warm-up.
LR_SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class DataConfig:
    """Where training data lives and how samples become mixed T2I + MMU micro-batches."""

    records: str = ""
    """FaceRecord JSONL file (caption, vqa, split per image)."""
    tokens: str = ""
    """Token shard file or folder written by ``unif2ace vq encode`` (pre-computed image codes)."""
    text_tokenizer: str = "bytes"
    """Text tokenizer: a ``tokenizer.json`` path, or 'bytes' (UTF-8 bytes as ids; tiny vocabularies)."""
    features: dict[str, str] = field(default_factory=dict)
    """Precomputed encoder-feature caches for the sequence-MoE experts, kind ('clip', 'face') -> file."""
    split: str = "train"
    """Record split to train on."""
    first_records: int = 0
    """Train on the first N records of ``data.records`` only (0 = all; the split filter applies after). ``unif2ace
    data synth`` keeps earlier faces and their splits when it grows a corpus, so the first N records are the
    smaller corpus: the first stage of a small-corpus-first curriculum ([INF])."""
    max_text_len: int = 64
    """Text budget in tokens (Show-o ``max_seq_length``); captions are truncated to it."""
    num_image_tokens: int = 16
    """Image tokens per image (8x8 = 64 for 64x64 images with a /8 tokenizer; Show-o 256)."""
    t2i_per_batch: int = 4
    """T2I (generation) samples per global micro-batch, summed over processes."""
    mmu_per_batch: int = 4
    """MMU (understanding) samples per global micro-batch, summed over processes."""
    caption_fraction: float = 0.5
    """Share of MMU samples that are captioning ("describe") rather than VQA conversations."""
    vqa_max_turns: int = 4
    """Question-answer pairs packed into one multi-turn conversation."""
    describe_prompt: str = "Describe this person's face in detail."
    """Question used for captioning samples (spec §5, [INF])."""
    cond_dropout_prob: float = 0.1
    """Classifier-free-guidance dropout: probability that a T2I caption is replaced by the empty prompt."""
    t2i_balance: list[str] = field(default_factory=list)
    """Attributes whose values the T2I stream evens out (e.g. ``[smile, eyeglasses]``): faces with a rarer value
    are drawn more often per epoch (``unif2ace.data.dataset.balance_repeats``); empty = every face once."""
    t2i_balance_max_repeat: int = 4
    """Most times one face is drawn per T2I epoch under ``t2i_balance``."""
    encode_images: bool = False
    """Re-encode images with the VQ tokenizer at every step instead of reading token shards (slow)."""
    vq_checkpoint: str = ""
    """VQ tokenizer checkpoint, needed only when ``encode_images`` is true."""
    num_workers: int = 0
    """DataLoader worker processes (0 = build batches in the training process)."""
    code_bits: int = 0
    """Train on the low ``code_bits`` bits of every image code (0 = the codes as they are): with an LFQ tokenizer
    each bit is the sign of one latent channel, so this is the same tokenizer with fewer channels, a coarser
    quantiser of 2^code_bits codes (``model.vocab.codebook_size`` must match); the first stage of a coarse-to-fine
    curriculum (``train.init_codebook_from_parent``)."""
    trim_padding: bool = True
    """Right-align the understanding rows (their tokens keep their positions) and drop the pad columns that every row
    of a micro-batch shares: the same losses up to float rounding on fewer tokens (faces-tiny: 195 -> ~172)."""

    def __post_init__(self) -> None:
        check(self.max_text_len >= 4, "data.max_text_len", "must be >= 4 (task token, bos, eos and one token)")
        check(self.num_image_tokens > 0, "data.num_image_tokens", "must be positive")
        check(self.t2i_per_batch >= 0 and self.mmu_per_batch >= 0, "data.t2i_per_batch", "batch sizes must be >= 0")
        check(
            self.t2i_per_batch + self.mmu_per_batch > 0,
            "data.t2i_per_batch",
            "t2i_per_batch + mmu_per_batch must be positive",
        )
        check(0.0 <= self.caption_fraction <= 1.0, "data.caption_fraction", "must be in [0, 1]")
        check(self.vqa_max_turns >= 1, "data.vqa_max_turns", "must be >= 1")
        check(0.0 <= self.cond_dropout_prob < 1.0, "data.cond_dropout_prob", "must be in [0, 1)")
        check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        check(self.first_records >= 0, "data.first_records", "must be >= 0 (0 = all records)")
        check(0 <= self.code_bits <= 30, "data.code_bits", "must be in [0, 30] (0 = the codes as they are)")
        check(self.t2i_balance_max_repeat >= 1, "data.t2i_balance_max_repeat", "must be >= 1")
        check(
            all(isinstance(a, str) and a for a in self.t2i_balance),
            "data.t2i_balance",
            "must be a list of attribute names, e.g. [smile, eyeglasses]",
        )
        check(
            not self.encode_images or bool(self.vq_checkpoint),
            "data.vq_checkpoint",
            "encode_images=true needs a VQ tokenizer checkpoint",
        )


@dataclass
class LossConfig:
    """Loss weights and D3Diff ablation switches (spec §4.5, §6, §8.4)."""

    mode: str = "d3diff"
    """'d3diff' (mask CE + alpha * score), 'mask_only' (alpha ignored) or 'score_only' (alpha * score only)."""
    alpha: float = 0.01
    """Weight of the SEDD score-entropy term."""
    variant: str = "exact"
    """Score parameterisation: 'exact' (RADD, log s = log p + log r) or 'paper' (log s = log p - log m)."""
    mask_schedule: str = "cosine"
    """Mask-ratio schedule of the corruption (Show-o: cosine)."""
    min_masking_rate: float = 0.0
    """Lower clip of the mask ratio."""
    t2i_coef: float = 1.0
    """Weight of the generation (D3Diff) loss."""
    mmu_coef: float = 1.0
    """Weight of the understanding (next-token CE) loss."""
    position_weight_attributes: list[str] = field(default_factory=list)
    """Attributes whose token positions the masked-token CE weighs up (e.g. ``[smile, eyeglasses, beard]``; [INF]):
    weights from the mutual information between each position's codes and the attribute on the training records
    (:func:`~unif2ace.data.dataset.attribute_position_weights`), mean 1; empty = uniform (Show-o)."""
    position_weight_strength: float = 1.0
    """How far those weights move from uniform: ``w = (1 + strength * m) / (1 + strength)``."""

    def __post_init__(self) -> None:
        check(self.mode in LOSS_MODES, "train.loss.mode", f"must be one of {', '.join(LOSS_MODES)}")
        check(self.alpha >= 0.0, "train.loss.alpha", "must be >= 0")
        check(self.variant in ("exact", "paper"), "train.loss.variant", "must be 'exact' or 'paper'")
        check(0.0 <= self.min_masking_rate < 1.0, "train.loss.min_masking_rate", "must be in [0, 1)")
        check(self.t2i_coef >= 0 and self.mmu_coef >= 0, "train.loss.t2i_coef", "loss weights must be >= 0")
        check(self.position_weight_strength >= 0, "train.loss.position_weight_strength", "must be >= 0")
        check(
            all(isinstance(a, str) and a for a in self.position_weight_attributes),
            "train.loss.position_weight_attributes",
            "must be a list of attribute names, e.g. [smile, eyeglasses]",
        )


@dataclass
class TrainConfig:
    """Optimisation, precision, checkpointing and logging (shared by all stages)."""

    seed: int = 10086
    """Base seed (Show-o's); per-process and per-sample seeds are derived from it."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated per optimizer step."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (0 = no clipping, as in Show-o)."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to norms, biases and embeddings)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    mixed_precision: str = "auto"
    """'auto' (bf16 on GPU, fp32 on CPU), 'no', 'bf16' or 'fp16'; on CPU only an explicit 'bf16' autocasts."""
    gradient_checkpointing: bool = False
    """Recompute block activations in backward (sets ``model.gradient_checkpointing``)."""
    ema_decay: float = 0.0
    """Exponential moving average of the weights (0 = off, e.g. 0.999)."""
    init_new_codebook: bool = False
    """``--init-from`` a model built for another image tokenizer (another codebook size): its text, special-token
    and mask rows of ``embed_tokens`` / ``lm_head`` are copied and the image-code rows start fresh."""
    init_codebook_from_parent: bool = False
    """With ``init_new_codebook``, from a model trained on the coarse codes of the same LFQ tokenizer
    (``data.code_bits``; the new codebook size a multiple of the old): each image code ``c`` takes the
    ``embed_tokens`` / ``lm_head`` rows of its parent ``c mod C_old``, its ``lm_head`` bias lowered by
    ``log(C_new / C_old)``, so the moved model reads a fine code as its parent and spreads each parent's
    probability evenly over its children (a coarse-to-fine curriculum, [INF])."""
    checkpoint_every: int = 500
    """Save a checkpoint every this many optimizer steps (and at the end of every stage)."""
    keep_last: int = 3
    """Complete checkpoints kept on disk (older ones are deleted)."""
    log_every: int = 10
    """Write a metrics line every this many optimizer steps."""
    preview_every: int = 0
    """Write previews (faces for fixed prompts, captions of fixed validation faces) every this many steps."""
    preview_prompts: list[str] = field(default_factory=list)
    """Fixed generation prompts (empty = the captions of the first validation faces)."""
    preview_faces: int = 4
    """Number of fixed validation faces (test split when it has tokens, else the first training faces)."""
    preview_steps: int = 8
    """MaskGIT steps of the preview sampler."""
    plot_every: int = 100
    """Redraw the loss-curve PNG every this many steps (0 = only at the end)."""
    progress_bar: bool = True
    """Show a tqdm bar (main process only)."""
    tensorboard: bool = False
    """Also log scalars to TensorBoard (needs the tensorboard package)."""
    wandb_project: str = ""
    """Also log to this Weights & Biases project (needs the wandb package; empty = off)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights and ablation switches."""

    def __post_init__(self) -> None:
        check(self.grad_accum_steps >= 1, "train.grad_accum_steps", "must be >= 1")
        check(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 disables clipping)")
        check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        betas_ok = len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)
        check(betas_ok, "train.betas", "must be two values in [0, 1)")
        check(self.eps > 0, "train.eps", "must be positive")
        check(self.mixed_precision in PRECISIONS, "train.mixed_precision", f"must be one of {', '.join(PRECISIONS)}")
        check(0.0 <= self.ema_decay < 1.0, "train.ema_decay", "must be in [0, 1) (0 disables EMA)")
        check(self.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
        check(self.keep_last >= 1, "train.keep_last", "must be >= 1")
        check(self.log_every >= 1, "train.log_every", "must be >= 1")
        check(self.preview_every >= 0 and self.plot_every >= 0, "train.preview_every", "must be >= 0")
        check(self.preview_faces >= 0 and self.preview_steps >= 1, "train.preview_faces", "must be >= 0 (steps >= 1)")


@dataclass
class StageConfig:
    """One stage of a staged recipe (e.g. A: train only routers / experts / resamplers; B: full fine-tune)."""

    name: str = "main"
    """Stage name (used in logs and checkpoint metadata)."""
    steps: int = 100
    """Optimizer steps in this stage."""
    lr: float = 5e-5
    """Peak learning rate of pre-existing (backbone) parameters."""
    new_param_lr: float = 0.0
    """Peak learning rate of new MoE / resampler parameters (0 = same as ``lr``)."""
    warmup_steps: int = 0
    """Linear warm-up steps from 0 to the peak learning rate."""
    schedule: str = "cosine"
    """Decay after warm-up: 'cosine', 'linear' or 'constant'."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of the peak."""
    trainable: list[str] = field(default_factory=list)
    """Parameters to train: glob patterns on parameter names or group names ('routers', 'experts',
    'resamplers', 'new', 'backbone'); empty = all parameters."""
    frozen: list[str] = field(default_factory=list)
    """Parameters to freeze (same syntax), applied after ``trainable``."""
    t2i_per_batch: int = -1
    """Override of ``data.t2i_per_batch`` for this stage (-1 = keep)."""
    mmu_per_batch: int = -1
    """Override of ``data.mmu_per_batch`` for this stage (-1 = keep)."""

    def __post_init__(self) -> None:
        check(bool(self.name) and "/" not in self.name, "stages.name", "must be a non-empty name without '/'")
        check(self.steps >= 1, f"stages[{self.name}].steps", "must be >= 1")
        check(self.lr > 0, f"stages[{self.name}].lr", "must be positive")
        check(self.new_param_lr >= 0, f"stages[{self.name}].new_param_lr", "must be >= 0 (0 = same as lr)")
        check(0 <= self.warmup_steps <= self.steps, f"stages[{self.name}].warmup_steps", "must be in [0, steps]")
        check(
            self.schedule in LR_SCHEDULES, f"stages[{self.name}].schedule", f"must be one of {', '.join(LR_SCHEDULES)}"
        )
        check(0.0 <= self.min_lr_ratio <= 1.0, f"stages[{self.name}].min_lr_ratio", "must be in [0, 1]")
        check(
            self.t2i_per_batch >= -1 and self.mmu_per_batch >= -1,
            f"stages[{self.name}].t2i_per_batch",
            "must be -1 (keep) or >= 0",
        )


@dataclass
class Unif2aceConfig:
    """The root config tree: model, data, training and the ordered stages of a recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Transformer and MoE sizes."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data sources and batch composition."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation and bookkeeping."""
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    """Stages run in order by ``unif2ace train``."""

    def __post_init__(self) -> None:
        check(len(self.stages) >= 1, "stages", "needs at least one stage")
        names = [s.name for s in self.stages]
        check(len(set(names)) == len(names), "stages", f"stage names must be unique, got {names}")
        seq_len = self.data.max_text_len + self.data.num_image_tokens + 4
        check(
            seq_len <= self.model.max_position_embeddings,
            "data.max_text_len",
            f"text + image tokens ({seq_len}) exceed model.max_position_embeddings="
            f"{self.model.max_position_embeddings}",
        )
        bits = self.data.code_bits
        check(
            bits == 0 or self.model.vocab.codebook_size == 2**bits,
            "data.code_bits",
            f"{bits} bits make {2**bits} codes but model.vocab.codebook_size is {self.model.vocab.codebook_size}; "
            "set them to match",
        )
        check(
            not self.train.init_codebook_from_parent or self.train.init_new_codebook,
            "train.init_codebook_from_parent",
            "needs train.init_new_codebook=true",
        )

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole recipe."""
        return sum(s.steps for s in self.stages)
