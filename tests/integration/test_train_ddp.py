"""Acceptance: two CPU processes (gloo DDP through accelerate, launched by torchrun) match one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unif2ace.config.base import to_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "training"))
from train_helpers import make_dataset, tiny_config  # noqa: E402


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss/total"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_match_one_process(tmp_path):
    records, tokens = make_dataset(tmp_path / "data")
    cfg = tiny_config(
        records,
        tokens,
        **{
            "data.t2i_per_batch": 4,
            "data.mmu_per_batch": 4,
            "train.grad_accum_steps": 2,
            "train.checkpoint_every": 100,
            "stages": [
                {"name": "head", "steps": 2, "lr": 2e-3, "trainable": ["lm_head.*"]},
                {"name": "all", "steps": 3, "lr": 2e-3, "warmup_steps": 1},
            ],
        },
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "--config", str(recipe), "--cpu", "--out"]
    one = subprocess.run(
        [sys.executable, "-m", "unif2ace", *args, str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # torchrun picks a free port itself: no race between choosing and binding one
        "--nproc_per_node",
        "2",
        "-m",
        "unif2ace",
    ]
    two = subprocess.run(
        [*launcher, *args, str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=240
    )
    assert two.returncode == 0, two.stderr[-2000:]
    state = json.loads((tmp_path / "two/checkpoints/step-0000005/training_state/state.json").read_text())
    assert state["world_size"] == 2  # really two processes
    assert (tmp_path / "two/checkpoints/step-0000005/training_state/rng-rank1.safetensors").is_file()
    single, double = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(single) == len(double) == 5
    assert double == pytest.approx(single, rel=1e-4, abs=1e-4)
    assert single[-1] < single[0]
