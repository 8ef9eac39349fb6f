"""``unif2ace ablate``: the paper's two ablations (spec §8.4 Table 3, §8.5 Table 4) at small scale, equal compute.

Eight runs of the ``train_tiny_cpu`` architecture (BPE-1024 text) on the same pre-encoded data, seed, batch and
number of steps (equal data and steps; the dense model spends fewer FLOPs per step):

* Table 3 (loss, full MoE model): D3Diff α ∈ {0.1, 0.01, 0.001}, mask-only (α = 0), score-only (α = 0.01);
* Table 4 (MoE, D3Diff α = 0.01): dense, token-MoE only, sequence-MoE only, both (= the α = 0.01 run).

Each run is exported as a bundle and evaluated with :func:`unif2ace.evaluation.harness.run_eval` on held-out
faces. The paper's VQAScore / VLM-score / Desc / Conv need large judge models; at this scale we report what runs
offline on CPU (FID on the held-out faces, generated-face attribute accuracy, caption BLEU-4 and attribute F1,
VQA yes/no accuracy, the masked-token CE of the last steps) next to the paper's numbers. Runs are resumable
(a finished variant is skipped on rerun).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unif2ace.utils.io import atomic_write_json, atomic_write_text

__all__ = ["AblationSettings", "VARIANTS", "run_ablation", "render_tables"]

TOKEN_MOE = {"enabled": True}
SEQ_MOE = {"enabled": True}
# name -> (table, loss mode, alpha, token MoE, sequence MoE)
VARIANTS: dict[str, tuple[str, str, float, bool, bool]] = {
    "d3diff-0.1": ("3", "d3diff", 0.1, True, True),
    "d3diff-0.01": ("3+4", "d3diff", 0.01, True, True),
    "d3diff-0.001": ("3", "d3diff", 0.001, True, True),
    "mask-only": ("3", "mask_only", 0.0, True, True),
    "score-only": ("3", "score_only", 0.01, True, True),
    "dense": ("4", "d3diff", 0.01, False, False),
    "token-moe": ("4", "d3diff", 0.01, True, False),
    "sequence-moe": ("4", "d3diff", 0.01, False, True),
}
PAPER_T3 = {  # VQAscore-CF5, VQAscore-LV, FID, VLM-score (spec §8.4)
    "d3diff-0.1": (0.887, 0.673, 68.903, 86.378),
    "d3diff-0.01": (0.894, 0.679, 66.005, 88.049),
    "d3diff-0.001": (0.884, 0.668, 72.736, 89.220),
    "mask-only": (0.879, 0.661, 77.463, 85.993),
    "score-only": (0.886, 0.670, 69.694, 87.951),
}
PAPER_T4 = {  # VQAscore, FID, VLM-score, Desc, Conv (spec §8.5)
    "dense": (0.878, 72.877, 84.432, 4.988, 6.031),
    "token-moe": (0.887, 67.415, 87.917, 5.678, 6.495),
    "sequence-moe": (0.889, 69.312, 86.790, 5.864, 6.247),
    "d3diff-0.01": (0.894, 66.005, 88.049, 6.023, 6.532),
}
# measured on 2 shared CPU cores (docs/evaluation.md): 0.17 s/step with both MoEs, 0.10 dense; ~50 s per evaluation
SECONDS_PER_STEP = 0.16
SECONDS_PER_EVAL = 60.0


@dataclass
class AblationSettings:
    """Size of the ablation.

    Attributes:
        steps: optimizer steps per variant (None = 1200, or 6 for ``toy``).
        records: records file (None = ``data/faces-mini/records.jsonl`` of the checkout).
        vq: VQ tokenizer folder (needed unless ``toy``: the toy run uses a random tokenizer).
        eval_items: held-out faces / prompts evaluated per variant (None = 12, or 2 for ``toy``).
        toy: a random tokenizer, a handful of steps and evaluation items (tests).
    """

    steps: int | None = None
    records: str | None = None
    vq: str | None = None
    eval_items: int | None = None
    toy: bool = False


def _default_records() -> Path:
    return Path(__file__).resolve().parents[3] / "data" / "faces-mini" / "records.jsonl"


def _config(records: Path, tokens: Path, steps: int, num_tokens: int, codebook: int, variant: str, toy: bool):
    from unif2ace.training.run import load_recipe

    _, mode, alpha, token, seq = VARIANTS[variant]
    overrides = [
        f"data.records={records}",
        f"data.tokens={tokens}",
        f"data.num_image_tokens={num_tokens}",
        f"model.vocab.codebook_size={codebook}",
        # BPE-1024 trained on the split's texts: the recipe's byte tokenizer would cut ~350-character captions
        "model.vocab.llm_vocab_size=1024",
        "model.vocab.bos_id=0",
        "model.vocab.eos_id=0",
        "data.text_tokenizer=bpe:1024",
        "data.max_text_len=128",
        f"model.token_moe.enabled={str(token).lower()}",
        f"model.seq_moe.enabled={str(seq).lower()}",
        f"train.loss.mode={mode}",
        f"train.loss.alpha={alpha}",
        f"train.checkpoint_every={steps}",
        "train.preview_every=0",
        "train.plot_every=0",
        "train.progress_bar=false",
        f"stages=[{{'name': 'main', 'steps': {steps}, 'lr': 0.001, 'warmup_steps': {min(10, steps)}}}]",
    ]
    if toy:
        overrides += ["data.t2i_per_batch=2", "data.mmu_per_batch=2"]
    return load_recipe("train_tiny_cpu", overrides)


def _vq_shape(vq: Path) -> tuple[int, int, int]:
    """(image tokens, codebook size, resolution) of a tokenizer folder."""
    from unif2ace.tokenizer.vq.checkpoint import load_tokenizer

    model = load_tokenizer(vq)
    side = model.config.resolution // model.downsample_factor
    return side * side, model.codebook_size, model.config.resolution


def run_ablation(out: str | Path, settings: AblationSettings | None = None, only: list[str] | None = None) -> dict:
    """Train, export and evaluate every variant; write ``ablation.json`` and ``ablation.md``.

    Raises:
        ValueError: unknown variant names, or no ``vq`` outside toy mode.
    """
    from unif2ace.evaluation.harness import EvalSettings, run_eval
    from unif2ace.pipeline import RecipeInfo, export_bundle
    from unif2ace.training.run import run_training

    s = settings or AblationSettings()
    names = list(only or VARIANTS)
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise ValueError(f"unknown ablation variant {bad[0]!r}; choose from {', '.join(VARIANTS)}")
    out = Path(out)
    steps = s.steps or (6 if s.toy else 1200)
    items = s.eval_items or (2 if s.toy else 12)
    records = Path(s.records) if s.records else _default_records()
    vq = _vq_dir(s, out)
    num_tokens, codebook, resolution = _vq_shape(vq)
    tokens = _encode_once(records, vq, resolution, out / "tokens")
    expected = len(names) * (steps * SECONDS_PER_STEP + (5.0 if s.toy else SECONDS_PER_EVAL))
    print(f"ablation: {len(names)} variants x {steps} steps, expected ~{expected / 60:.0f} min on 2 CPU cores")
    start = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        done = out / name / "result.json"
        if done.is_file():
            rows[name] = json.loads(done.read_text())
            continue
        t0 = time.perf_counter()
        cfg = _config(records, tokens, steps, num_tokens, codebook, name, s.toy)
        result = run_training(cfg, out / name / "run", cpu=True)
        bundle = export_bundle(result.checkpoint, vq, out / name / "bundle", recipe=RecipeInfo(steps=8))
        skip = ("edits", "meteor", "vqascore", "alignment", "attributes", "fid") if s.toy else ("edits", "meteor")
        ev = EvalSettings(num_prompts=items, num_understanding=items, num_edits=0, skip=skip, extra={"ablation": name})
        report = run_eval(bundle, records, out / name / "eval", ev)
        rows[name] = _row(report, result, out / name / "run" / "metrics.jsonl", time.perf_counter() - t0)
        atomic_write_json(done, rows[name])
    tables = render_tables(rows)
    result = {"steps": steps, "eval_items": items, "rows": rows, "tables_markdown": tables}
    result["wall_time_s"] = time.perf_counter() - start
    atomic_write_json(out / "ablation.json", result)
    atomic_write_text(out / "ablation.md", tables + f"\nwall time: {result['wall_time_s'] / 60:.1f} min\n")
    return result


def _encode_once(records: Path, vq: Path, resolution: int, folder: Path) -> Path:
    """Encode every record's image once (all variants read the same codes; resumable via provenance.json)."""
    from unif2ace.data.records import read_records
    from unif2ace.tokenizer.vq.checkpoint import load_tokenizer
    from unif2ace.tokenizer.vq.pretokenize import encode_to_shards

    if (folder / "provenance.json").is_file():
        return folder
    paths = [(records.parent / r.image).resolve() for r in read_records(records)]
    encode_to_shards(load_tokenizer(vq), paths, folder, resolution, {"folder": str(vq.resolve())}, progress=False)
    return folder


def _vq_dir(s: AblationSettings, out: Path) -> Path:
    if s.vq:
        return Path(s.vq)
    if not s.toy:
        raise ValueError("ablate needs a trained image tokenizer: pass --vq DIR (unif2ace vq train), or --toy")
    from unif2ace.pipeline import create_random_bundle

    bundle = out / "random-vq"
    if not (bundle / "vq").is_dir():
        create_random_bundle(bundle, seed=0)
    return bundle / "vq"


def _mask_ce(metrics_file: Path, last: int = 5) -> float | None:
    """Mean masked-token CE of the last logged steps: comparable across loss modes (the total loss is not)."""
    if not metrics_file.is_file():
        return None
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    values = [r["loss/t2i_mask_ce"] for r in rows if "loss/t2i_mask_ce" in r][-last:]
    return sum(values) / len(values) if values else None


def _row(report: dict[str, Any], result: Any, metrics_file: Path, seconds: float) -> dict[str, Any]:
    gen = report["generation"]["metrics"]
    und = report["understanding"]["metrics"]
    return {
        "fid": gen.get("fid"),
        "attribute_accuracy": gen.get("attribute_accuracy"),
        "bleu4": und.get("bleu4"),
        "attribute_f1": und.get("attribute_f1"),
        "vqa_yes_no": und.get("vqa_yes_no_accuracy"),
        "desc_judge": und.get("desc_judge"),
        "conv_judge": und.get("conv_judge"),
        "final_loss": result.last_loss,
        "mask_ce": _mask_ce(metrics_file),
        "model_hash": report["model"]["hash"],
        "seconds": seconds,
    }


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def render_tables(rows: dict[str, dict[str, Any]]) -> str:
    """Both tables as markdown: the paper's columns, then ours for the same variant."""
    t3 = [
        "### Table 3: loss ablation (paper | ours)",
        "",
        "| variant | α | paper CF5 | paper LV | paper FID | paper VLM | our FID | our attr-acc | our mask CE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, paper in PAPER_T3.items():
        r = rows.get(name, {})
        alpha = VARIANTS[name][2]
        t3.append(
            f"| {name} | {alpha:g} | {paper[0]} | {paper[1]} | {paper[2]} | {paper[3]} | {_f(r.get('fid'), 1)} | "
            f"{_f(r.get('attribute_accuracy'))} | {_f(r.get('mask_ce'))} |"
        )
    t4 = [
        "### Table 4: MoE ablation (paper | ours)",
        "",
        "| token | seq | paper VQA | paper FID | paper VLM | paper Desc | paper Conv | our FID | our attr-acc | "
        "our BLEU-4 | our attr-F1 | our yes/no |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, paper in PAPER_T4.items():
        r = rows.get(name, {})
        tok, seq = ("✓" if VARIANTS[name][3] else "✗"), ("✓" if VARIANTS[name][4] else "✗")
        t4.append(
            f"| {tok} | {seq} | {paper[0]} | {paper[1]} | {paper[2]} | {paper[3]} | {paper[4]} | "
            f"{_f(r.get('fid'), 1)} | {_f(r.get('attribute_accuracy'))} | {_f(r.get('bleu4'))} | "
            f"{_f(r.get('attribute_f1'))} | {_f(r.get('vqa_yes_no'))} |"
        )
    return "\n".join(t3 + [""] + t4) + "\n"
