"""Losses and the forward (corruption) process: schedules, masking, masked CE, score entropy, D3Diff, text CE."""

from unif2ace.losses.corruption import IGNORE_INDEX, MaskedTokens, mask_tokens, sample_transition
from unif2ace.losses.d3diff import D3DiffLoss, D3DiffOutput
from unif2ace.losses.masked_ce import masked_token_ce, token_ce_mean
from unif2ace.losses.schedules import (
    CosineSchedule,
    LinearSchedule,
    LogLinearNoise,
    MaskingNoise,
    MaskSchedule,
    Noise,
    PowSchedule,
    SigmoidSchedule,
    get_mask_schedule,
)
from unif2ace.losses.score_entropy import (
    absorbing_score_entropy,
    dse_bracket,
    reverse_rate,
    score_entropy_loss,
    staggered_score,
    transp_transition,
)
from unif2ace.losses.text import next_token_ce
from unif2ace.losses.total import LossBreakdown, LossWeights, combine_losses

__all__ = [
    "IGNORE_INDEX",
    "CosineSchedule",
    "D3DiffLoss",
    "D3DiffOutput",
    "LinearSchedule",
    "LogLinearNoise",
    "LossBreakdown",
    "LossWeights",
    "MaskSchedule",
    "MaskedTokens",
    "MaskingNoise",
    "Noise",
    "PowSchedule",
    "SigmoidSchedule",
    "absorbing_score_entropy",
    "combine_losses",
    "dse_bracket",
    "get_mask_schedule",
    "mask_tokens",
    "masked_token_ce",
    "next_token_ce",
    "reverse_rate",
    "sample_transition",
    "score_entropy_loss",
    "staggered_score",
    "token_ce_mean",
    "transp_transition",
]
