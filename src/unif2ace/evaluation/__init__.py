"""Evaluation (spec §8): generation and understanding metrics, judges, reports, the ablation grid.

Modules: :mod:`~unif2ace.evaluation.fid` (FID/KID on TF-Inception features), :mod:`~unif2ace.evaluation.captions`
(BLEU/METEOR/ROUGE-L/CIDEr), :mod:`~unif2ace.evaluation.understanding` (attribute P/R/F1, VQA accuracy),
:mod:`~unif2ace.evaluation.generation` (prompt attribute accuracy, edit identity, alignment),
:mod:`~unif2ace.evaluation.judge` (OpenAI-compatible LLM/VLM judge), :mod:`~unif2ace.evaluation.vqascore`,
:mod:`~unif2ace.evaluation.report` (group breakdowns, markdown, plots), :mod:`~unif2ace.evaluation.harness`
(``unif2ace eval``) and :mod:`~unif2ace.evaluation.ablate` (``unif2ace ablate``). See ``docs/evaluation.md``.
"""

from unif2ace.evaluation.captions import caption_metrics
from unif2ace.evaluation.fid import fid_from_features, kid
from unif2ace.evaluation.harness import EvalSettings, run_eval
from unif2ace.evaluation.judge import JudgeClient, judge_from_env
from unif2ace.evaluation.understanding import attribute_prf, vqa_scores

__all__ = [
    "EvalSettings",
    "JudgeClient",
    "attribute_prf",
    "caption_metrics",
    "fid_from_features",
    "judge_from_env",
    "kid",
    "run_eval",
    "vqa_scores",
]
