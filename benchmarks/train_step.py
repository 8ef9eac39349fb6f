"""Seconds per optimizer step of a training recipe's stages on this machine -> JSON.

Each measured stage runs for ``--steps`` optimizer steps in a temporary folder (no previews, no plots, one checkpoint
at the end) through the same ``run_training`` that ``unif2ace train`` calls; the first ``--skip`` steps (allocator and
cache warm-up) are left out of the median. ``--set`` compares variants of one setting (e.g. ``data.trim_padding``);
``--init-from`` starts from trained weights, so that routing (which decides how much work the MoEs do) looks like
it does late in a run.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/train_step.py --config train_faces_tiny_8k --stages 0 1 \\
        --set data.trim_padding=true data.trim_padding=false --threads 2 --steps 40 \\
        --out benchmarks/results/train_step_faces_tiny.json

Steps are timed from the trainer's own per-step metrics (``log_every=1``), so data loading, the optimizer, the EMA
and gradient clipping are included, as in a real run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def time_stage(config: str, stage: int, overrides: list[str], steps: int, skip: int, init_from: str | None) -> dict:
    """Run ``steps`` steps of stage ``stage`` of ``config``; per-step seconds from the metrics file."""
    from unif2ace.training.run import load_recipe, run_training

    cfg = load_recipe(
        config,
        overrides
        + ["train.preview_every=0", "train.plot_every=0", "train.log_every=1", f"train.checkpoint_every={steps}"],
    )
    spec = cfg.stages[stage]
    one = dataclasses.replace(spec, steps=steps, warmup_steps=min(spec.warmup_steps, steps))
    cfg = dataclasses.replace(cfg, stages=[one], train=dataclasses.replace(cfg.train, progress_bar=False))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_training(cfg, tmp, init_from=init_from)
        wall = time.perf_counter() - start
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    stamps = [r["time"] for r in rows]
    per_step = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][skip:]
    return {
        "stage": spec.name,
        "trainable": spec.trainable or ["all"],
        "steps_timed": len(per_step),
        "s_per_step_median": round(statistics.median(per_step), 4),
        "s_per_step_mean": round(statistics.fmean(per_step), 4),
        "tokens_per_s_median": round(statistics.median(r["tokens_per_s"] for r in rows[skip:]), 1),
        "final_loss": rows[-1]["loss/total"],
        "wall_s_with_setup": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    from unif2ace.utils.io import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="train_faces_tiny_8k", help="recipe name or YAML file")
    p.add_argument("--stages", type=int, nargs="+", default=[0], help="stage indices to time")
    p.add_argument("--set", nargs="+", default=[""], help="variants: one dotted override each ('' = as configured)")
    p.add_argument("--override", nargs="*", default=[], help="overrides applied to every variant")
    p.add_argument("--init-from", default=None, help="checkpoint or bundle to start from (default: fresh weights)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--skip", type=int, default=5, help="first steps left out of the median")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    if a.steps <= a.skip + 1:
        raise SystemExit(f"--steps {a.steps} must exceed --skip {a.skip} + 1")
    torch.set_num_threads(a.threads)
    result: dict = {
        "config": a.config,
        "init_from": a.init_from,
        "overrides": a.override,
        "host": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "torch": torch.__version__,
        "runs": {},
    }
    for variant in a.set:
        for stage in a.stages:
            extra = [variant] if variant else []
            row = time_stage(a.config, stage, a.override + extra, a.steps, a.skip, a.init_from)
            key = f"{variant or 'as configured'}|stage {stage}"
            result["runs"][key] = row
            print(f"{key}: {row['s_per_step_median']} s/step ({row['tokens_per_s_median']} tok/s)", flush=True)
    atomic_write_json(a.out, result)
    return result


if __name__ == "__main__":
    main()
