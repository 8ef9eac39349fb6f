"""``unif2ace eval``: every metric of spec §8 (and our face-specific ones) on one bundle, one command.

The run is keyed by the bundle's model hash and a pinned sampling recipe (seed, steps, guidance, prompt list and
its sha256), all written into ``report.json``. Prompts are the reference captions of the evaluation split (the
paper generates from UniF²aceD test prompts); the real faces of the same split are the FID reference set. Each
optional backend that is missing (Inception network, annotators, dlib, semantic encoder, VQAScore model, judge API
key) is skipped with one line under ``skipped`` in the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unif2ace.evaluation.report import breakdown, plot_breakdown, plot_samples, record_groups, render_markdown
from unif2ace.utils.io import atomic_write_json, atomic_write_text

__all__ = ["EvalSettings", "run_eval"]

log = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    """What one evaluation run does.

    Attributes:
        split: records split to evaluate (prompts, real faces, captions, VQA).
        num_prompts: text-to-face prompts (None = every record of the split, 0 = none).
        num_understanding: faces captioned / questioned (None = every record, 0 = none).
        num_edits: region edits for identity preservation.
        seed: seed of generation chunk 0 (chunk ``i`` of 8 prompts uses ``seed + i``) and of captioning.
        steps: MaskGIT steps (None = the bundle's recipe).
        guidance_scale: CFG scale (None = the bundle's recipe).
        edit_region: region regenerated in the edit test.
        judge: use the LLM / VLM judges when configured.
        vqascore_model: local VLM folder for VQAScore (None = ``UNIF2ACE_VQASCORE_MODEL`` or skipped).
        device: pipeline device (None = auto).
        skip: metric families not to run: ``fid``, ``meteor``, ``attributes``, ``edits``, ``judge``, ``vqascore``,
            ``alignment`` (each gets a line in the report).
        extra: free-form facts recorded with the run (e.g. ``quick``).
    """

    split: str = "test"
    num_prompts: int | None = None
    num_understanding: int | None = None
    num_edits: int = 8
    seed: int = 0
    steps: int | None = None
    guidance_scale: float | None = None
    edit_region: str = "hair"
    judge: bool = True
    vqascore_model: str | None = None
    device: str | None = None
    skip: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("num_prompts", "num_understanding", "num_edits"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = none, unset = every record), got {getattr(self, name)}")

    @classmethod
    def quick(cls, **overrides: Any) -> EvalSettings:
        """A few items of everything (smoke evaluation, minutes on CPU)."""
        return cls(**{"num_prompts": 8, "num_understanding": 6, "num_edits": 2, "steps": 8, **overrides})


def _load_records(path: Path, split: str) -> list[dict[str, Any]]:
    from unif2ace.data.dataset import load_records

    records = load_records(path, split)
    if not records:
        raise ValueError(f"{path}: no captioned records in split {split!r}; pass --split with one that has some")
    return records


def run_eval(checkpoint: str | Path, data: str | Path, out: str | Path, settings: EvalSettings | None = None) -> dict:
    """Evaluate a bundle and write ``report.json``, ``report.md``, generated images and plots into ``out``.

    Args:
        checkpoint: a bundle folder (``Unif2acePipeline.from_pretrained``).
        data: records file with reference captions, attributes, VQA and images.
        out: output folder.
        settings: what to run (default: the full evaluation).

    Returns:
        The report dictionary.

    Raises:
        FileNotFoundError / ValueError: missing bundle or records, empty split, bad settings.
    """
    from unif2ace.pipeline import Unif2acePipeline

    s = settings or EvalSettings()
    start = time.perf_counter()
    out, data = Path(out), Path(data)
    records = _load_records(data, s.split)
    pipe = Unif2acePipeline.from_pretrained(checkpoint, device=s.device)
    routing = _RoutingTap(pipe.model)
    gen_recs = records if s.num_prompts is None else records[: s.num_prompts]
    und_recs = records if s.num_understanding is None else records[: s.num_understanding]
    prompts = [r["caption"] for r in gen_recs]
    recipe = {
        "seed": s.seed,
        "steps": s.steps if s.steps is not None else pipe.info.recipe.steps,
        "guidance_scale": s.guidance_scale if s.guidance_scale is not None else pipe.info.recipe.guidance_scale,
        "chunk": 8,
        "prompts": prompts,
        "prompt_ids": [r["id"] for r in gen_recs],
        "prompts_sha256": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
    }
    report: dict[str, Any] = {
        "model": {"name": pipe.name, "hash": pipe.model_hash, "folder": str(Path(checkpoint).resolve())},
        "data": {"records": str(data), "split": s.split, "num_records": len(records)},
        "quick": bool(s.extra.get("quick", False)),
        "recipe": recipe,
        "device": str(pipe.device),
        "skipped": [],
        "notes": [],
    }
    groups = {r["id"]: record_groups(r) for r in records}
    report["skipped"] += [f"{name} skipped: --skip {name}" for name in s.skip]
    routing.task = "gen"
    report["generation"] = report["understanding"] = {}
    if gen_recs:
        report["generation"] = _generation(pipe, gen_recs, recipe, data.parent, out, groups, s, report)
    else:
        report["skipped"].append("generation skipped: --num-prompts 0")
    routing.task = "und"
    if und_recs:
        report["understanding"] = _understanding(pipe, und_recs, s, data.parent, out, groups, report)
    else:
        report["skipped"].append("understanding skipped: --num-understanding 0")
    routing.task = None
    report["edits"] = _edits(pipe, records, s, data.parent, groups, report)
    report["plots"] = _plots(report, routing, pipe, out)
    report["wall_time_s"] = time.perf_counter() - start
    atomic_write_json(out / "report.json", _jsonable(report))
    atomic_write_text(out / "report.md", render_markdown(report))
    return report


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def _nanmean(values: list[float | None]) -> float:
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(kept)) if kept else float("nan")


def _real_image(folder: Path, record: dict[str, Any]) -> Image.Image:
    from unif2ace.utils.images import load_image

    return load_image(folder / record["image"])


# ---------------------------------------------------------------------------------------------- generation
def _generation(pipe, recs, recipe, root, out, groups, s, report) -> dict[str, Any]:
    images: list[Image.Image] = []
    prompts = recipe["prompts"]
    for i, start in enumerate(range(0, len(prompts), recipe["chunk"])):
        chunk = prompts[start : start + recipe["chunk"]]
        res = pipe.generate(chunk, steps=recipe["steps"], guidance_scale=recipe["guidance_scale"], seed=s.seed + i)
        images += res.images
    (out / "images").mkdir(parents=True, exist_ok=True)
    for rec, img in zip(recs, images, strict=True):
        img.save(out / "images" / f"gen-{rec['id']}.png")
    ids = [r["id"] for r in recs]
    per_item: dict[str, dict[str, float | None]] = {rid: {} for rid in ids}
    metrics: dict[str, float] = {}
    skipped = report["skipped"]
    real = [_real_image(root, r) for r in recs]
    fid_fn = _fid(images, real, ids, metrics, skipped) if "fid" not in s.skip else None
    if "attributes" not in s.skip:
        _attribute_accuracy(images, real, prompts, ids, per_item, metrics, skipped, report)
    if "alignment" not in s.skip:
        _per_image_scores("alignment", _alignment, images, prompts, ids, per_item, metrics, skipped)
    if "vqascore" not in s.skip:
        _per_image_scores("vqascore", _vqascore(s), images, prompts, ids, per_item, metrics, skipped)
    if s.judge and "judge" not in s.skip:
        _per_image_scores("vlm_score", _vlm(out), images, prompts, ids, per_item, metrics, skipped)
    report["_images"] = images
    return {"metrics": metrics, "groups": breakdown(per_item, groups, fid_fn), "per_item": per_item}


def _fid(images, real, ids, metrics, skipped):
    from unif2ace.evaluation.fid import InceptionFeatures, fid_from_features, kid

    if len(images) < 2:
        skipped.append("FID/KID skipped: fewer than 2 generated faces")
        return None
    try:
        net = InceptionFeatures()
    except FileNotFoundError as err:
        skipped.append(f"FID/KID skipped: {err}")
        return None
    fg, fr = net(images), net(real)
    metrics["fid"] = fid_from_features(fg, fr)
    metrics["kid"] = kid(fg, fr, num_subsets=50)
    metrics["fid_num_images"] = len(images)
    index = {rid: i for i, rid in enumerate(ids)}

    def per_group(sub: list[str]) -> dict[str, float]:
        rows = [index[r] for r in sub]
        return {"fid": fid_from_features(fg[rows], fr[rows])} if len(rows) >= 5 else {}

    return per_group


def _attribute_accuracy(images, real, prompts, ids, per_item, metrics, skipped, report) -> None:
    from unif2ace.evaluation.generation import AttributeJudge

    try:
        judge = AttributeJudge()
    except (FileNotFoundError, ValueError) as err:
        skipped.append(f"generated-face attribute accuracy skipped: {err}")
        return
    hits, _ = judge.score(images, prompts)
    flat = [ok for h in hits for ok in h.values()]
    metrics["attribute_accuracy"] = float(np.mean(flat)) if flat else float("nan")
    metrics["attribute_checks"] = len(flat)
    real_hits, _ = judge.score(real, prompts)  # the same judge on the real faces the prompts describe: a ceiling
    flat_real = [ok for h in real_hits for ok in h.values()]
    metrics["attribute_accuracy_real_faces"] = float(np.mean(flat_real)) if flat_real else float("nan")
    by_attr: dict[str, list[bool]] = {}
    for rid, h in zip(ids, hits, strict=True):
        per_item[rid]["attribute_accuracy"] = float(np.mean(list(h.values()))) if h else None
        for name, ok in h.items():
            by_attr.setdefault(name, []).append(ok)
    metrics.update({f"attribute_accuracy/{k}": float(np.mean(v)) for k, v in sorted(by_attr.items())})
    report["notes"].append(
        f"attribute accuracy judged by {', '.join(judge.tags)}: the same annotators labelled the training records "
        "(no independent annotator is available offline), so learned annotator biases are not penalised"
    )


def _per_image_scores(name, scorer, images, prompts, ids, per_item, metrics, skipped) -> None:
    scores, why = scorer(images, prompts) if callable(scorer) else (None, scorer)
    if scores is None:
        skipped.append(why)
        return
    for rid, value in zip(ids, scores, strict=True):
        per_item[rid][name] = value
    metrics[name] = _nanmean(scores)


def _alignment(images, prompts):
    from unif2ace.evaluation.generation import alignment_scores

    return alignment_scores(images, prompts)


def _vqascore(s: EvalSettings):
    from unif2ace.evaluation.vqascore import vqascorer_from_config

    scorer, why = vqascorer_from_config(s.vqascore_model)
    if scorer is None:
        return why
    return lambda images, prompts: (scorer.score(images, prompts), "")


def _vlm(out: Path):
    from unif2ace.evaluation.judge import judge_from_env

    client, why = judge_from_env(out / "judge-cache", "UNIF2ACE_VLM_JUDGE_MODEL", None)
    if client is None:
        return f"VLM-score skipped: {why}"
    return lambda images, prompts: ([client.score_image(i, p).score for i, p in zip(images, prompts, strict=True)], "")


# ---------------------------------------------------------------------------------------------- understanding
def _understanding(pipe, recs, s, root, out, groups, report) -> dict[str, Any]:
    from unif2ace.evaluation.captions import caption_metrics
    from unif2ace.evaluation.understanding import attribute_prf, vqa_scores

    by_id = {r["id"]: r for r in recs}
    captions, turns = {}, {}
    for rec in recs:
        image = _real_image(root, rec)
        captions[rec["id"]] = pipe.caption(image, seed=s.seed).text
        qa = [t for t in rec.get("vqa") or [] if isinstance(t, dict) and t.get("q")]
        turns[rec["id"]] = [
            {
                "q": t["q"],
                "ref": t.get("a", ""),
                "kind": t.get("kind", ""),
                "pred": pipe.ask(image, t["q"], seed=s.seed).text,
            }
            for t in qa
        ]
    atomic_write_json(out / "understanding_outputs.json", {"captions": captions, "vqa": turns})
    refs = {rid: [by_id[rid]["caption"]] for rid in captions}
    metrics, skipped = caption_metrics(captions, refs, meteor="meteor" not in s.skip)
    report["skipped"] += skipped
    overall, per_attr, prf = attribute_prf(captions, by_id)
    per_item = {rid: {f"attribute_{k}": v for k, v in m.items()} for rid, m in prf.items()}
    metrics.update({f"attribute_{k}": v for k, v in overall.items()})
    vqa = vqa_scores([t for ts in turns.values() for t in ts])
    metrics.update({f"vqa_{k}": v for k, v in vqa.items()})
    for rid, ts in turns.items():
        v = vqa_scores(ts) if ts else {}
        per_item[rid].update({"vqa_exact_match": v.get("exact_match"), "vqa_yes_no_accuracy": v.get("yes_no_accuracy")})
    if s.judge and "judge" not in s.skip:
        _judge_understanding(captions, turns, by_id, out, metrics, per_item, report)

    def corpus(ids: list[str]) -> dict[str, float]:
        sub, _ = caption_metrics({k: captions[k] for k in ids}, {k: refs[k] for k in ids}, meteor=False)
        return {k: sub[k] for k in ("bleu4", "cider") if k in sub}

    return {
        "metrics": metrics,
        "per_attribute": per_attr,
        "groups": breakdown(per_item, groups, corpus),
        "per_item": per_item,
    }


def _judge_understanding(captions, turns, by_id, out, metrics, per_item, report) -> None:
    from unif2ace.evaluation.judge import judge_from_env

    client, why = judge_from_env(out / "judge-cache")
    if client is None:
        report["skipped"].append(f"Desc/Conv LLM-judge scores skipped: {why}")
        return
    desc, conv, failures = [], [], 0
    for rid, caption in captions.items():
        d = client.score_description(by_id[rid]["caption"], caption)
        c = [client.score_answer(t["q"], t["ref"], t["pred"]) for t in turns[rid]]
        failures += (d.score is None) + sum(x.score is None for x in c)
        per_item[rid]["desc_judge"] = d.score
        scores = [x.score for x in c if x.score is not None]
        per_item[rid]["conv_judge"] = float(np.mean(scores)) if scores else None
        desc += [d.score] if d.score is not None else []
        conv += scores
    metrics["desc_judge"] = float(np.mean(desc)) if desc else float("nan")
    metrics["conv_judge"] = float(np.mean(conv)) if conv else float("nan")
    metrics["judge_failures"] = failures
    report["notes"].append(f"LLM judge: {client.model} at {client.base_url}; stats {client.stats}")


# ---------------------------------------------------------------------------------------------- edits
def _edits(pipe, records, s, root, groups, report) -> dict[str, Any]:
    if s.num_edits <= 0 or "edits" in s.skip:
        return {}
    try:
        from unif2ace.data.faces import FaceAnalyzer

        analyzer = FaceAnalyzer(upsample=1)
    except FileNotFoundError as err:
        report["skipped"].append(f"edit identity preservation skipped: {err}")
        return {}
    per_item: dict[str, dict[str, float | None]] = {}
    failed = 0
    for i, rec in enumerate(records[: s.num_edits]):
        image = _real_image(root, rec)
        target = records[(i + 1) % len(records)]["caption"]  # another face's description drives the edit
        try:
            res = pipe.edit(image, target, region=s.edit_region, seed=s.seed, steps=s.steps)
        except ValueError as err:  # no face found for the region
            failed += 1
            log.info("edit of %s skipped: %s", rec["id"], err)
            continue
        edited, recon = res.images[0], pipe.reconstruct(image)
        square = image.resize(edited.size)
        inside, outside = _pixel_change(square, edited, res.mask)
        per_item[rec["id"]] = {
            "identity_distance": _identity(analyzer, square, edited),
            "identity_distance_reconstruction": _identity(analyzer, square, recon),
            "pixel_change_inside": inside,
            "pixel_change_outside": outside,
        }
    if failed:
        report["notes"].append(f"{failed} of {min(s.num_edits, len(records))} edits skipped: no face found")
    if not per_item:
        report["skipped"].append("edit identity preservation skipped: no edit succeeded")
        return {}
    metrics = {k: _nanmean([v[k] for v in per_item.values()]) for k in next(iter(per_item.values()))}
    dists = [v["identity_distance"] for v in per_item.values() if v["identity_distance"] is not None]
    metrics["same_identity_rate"] = float(np.mean([d < 0.6 for d in dists])) if dists else float("nan")
    metrics["edits"] = len(per_item)
    return {"metrics": metrics, "groups": breakdown(per_item, groups), "per_item": per_item, "region": s.edit_region}


def _identity(analyzer, a, b):
    from unif2ace.evaluation.generation import identity_distance

    return identity_distance(analyzer, a.resize((256, 256)), b.resize((256, 256)))


def _pixel_change(before, after, mask):
    from unif2ace.evaluation.generation import pixel_change

    return pixel_change(before, after, mask)


# ---------------------------------------------------------------------------------------------- plots
class _RoutingTap:
    """Collects the model's per-layer routing records during evaluation, tagged with the task's group."""

    def __init__(self, model: Any) -> None:
        self.task: str | None = None
        self.records: list[tuple[Any, str, int]] = []
        model.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        routing = getattr(output, "routing", None)
        if self.task and routing and any(routing):
            chosen = [r["seq"]["seq_experts"] for r in routing if "seq_experts" in r.get("seq", {})]
            rows = chosen[0].shape[0] if chosen else 1  # (B, k) -> B sequences routed in this forward
            self.records.append((routing, self.task, rows))


def _plots(report, routing: _RoutingTap, pipe, out: Path) -> list[str]:
    plots = []
    images = report.pop("_images", [])
    if images:
        plot_samples(images[:24], report["recipe"]["prompts"][:24], out / "samples.png")
        plots.append("samples.png")
    pairs = [
        ("generation", "attribute_accuracy"),
        ("generation", "fid"),
        ("understanding", "attribute_recall"),
        ("understanding", "vqa_yes_no_accuracy"),
        ("edits", "identity_distance"),
    ]
    if plot_breakdown(report, pairs, out / "groups.png"):
        plots.append("groups.png")
    png = _routing_png(routing, pipe, out / "routing.png", report)
    if png:
        plots.append("routing.png")
    return plots


def _routing_png(tap: _RoutingTap, pipe, out_png: Path, report) -> Path | None:
    import torch

    from unif2ace.config.model import GEN, UND
    from unif2ace.training.routing_report import collect_usage, plot_usage

    if not tap.records:
        report["skipped"].append("routing heatmap skipped: the model has no MoE layers (dense)")
        return None
    seq = pipe.model.config.seq_moe
    routings = [r for r, _, _ in tap.records]
    groups = [torch.full((n,), UND if task == "und" else GEN) for _, task, n in tap.records]
    try:
        usage = collect_usage(routings, groups, {"und": len(seq.und_experts), "gen": len(seq.gen_experts)})
        labels = {"seq/und": list(seq.und_experts), "seq/gen": list(seq.gen_experts)}
        plot_usage(usage, labels, out_png, f"expert usage during evaluation, {pipe.name}")
    except (ValueError, IndexError, RuntimeError) as err:
        report["skipped"].append(f"routing heatmap skipped: {err}")
        return None
    report["routing"] = {k: v.astype(int).tolist() for k, v in usage.items()}
    return out_png
