"""Acceptance: SIGKILL mid-run + re-run reaches the uninterrupted final loss; seeded runs repeat (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unif2ace.config.base import to_dict
from unif2ace.training.checkpoint import COMPLETE, checkpoint_dirs, latest_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "training"))
from train_helpers import make_dataset, tiny_config  # noqa: E402

STEPS = 12  # the kill comes at step 4: enough steps remain even on a fast machine


def _recipe(tmp_path: Path, **overrides) -> Path:
    records, tokens = make_dataset(tmp_path / "data")
    cfg = tiny_config(
        records,
        tokens,
        **{
            "stages": [
                {"name": "routers_first", "steps": 3, "lr": 2e-3, "warmup_steps": 1, "trainable": ["lm_head.*"]},
                {"name": "full", "steps": STEPS - 3, "lr": 1e-3, "warmup_steps": 1},
            ],
            "train.checkpoint_every": 2,
            "train.ema_decay": 0.9,
            **overrides,
        },
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def _cmd(recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "unif2ace", "train", "--config", str(recipe), "--out", str(out), "--cpu"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicated metric steps after resume: {steps}"
    return {r["step"]: r["loss/total"] for r in records}


def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path):
    recipe = _recipe(tmp_path)
    full = subprocess.run(_cmd(recipe, tmp_path / "full"), env=_env(), capture_output=True, text=True, timeout=240)
    assert full.returncode == 0, full.stderr[-2000:]
    reference = _losses(tmp_path / "full")
    assert sorted(reference) == list(range(1, STEPS + 1))

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(recipe, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline and not (out / "checkpoints" / "step-0000004" / COMPLETE).exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = latest_checkpoint(out / "checkpoints")
    assert done is not None and STEPS > int(done.name.split("-")[1]) >= 4
    for folder in (out / "checkpoints").iterdir():  # anything else is invisible to the loader
        assert folder in checkpoint_dirs(out / "checkpoints") or not (folder / COMPLETE).exists()

    again = subprocess.run(_cmd(recipe, out), env=_env(), capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {done}" in again.stderr
    resumed = _losses(out)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert resumed[STEPS] == pytest.approx(reference[STEPS], abs=1e-5)
    for step in range(1, STEPS + 1):
        assert resumed[step] == pytest.approx(reference[step], abs=1e-5)
    assert not list((out / "checkpoints").glob(".tmp-*"))
    assert len(checkpoint_dirs(out / "checkpoints")) <= 3  # keep_last
    assert (out / "loss_curve.png").stat().st_size > 1000


def test_same_seed_gives_identical_first_20_losses(tmp_path):
    from train_helpers import model_factory

    from unif2ace.training.run import run_training

    records, tokens = make_dataset(tmp_path / "data")
    cfg = tiny_config(
        records, tokens, **{"stages": [{"name": "main", "steps": 20, "lr": 1e-3}], "train.checkpoint_every": 100}
    )
    first = run_training(cfg, tmp_path / "a", model_factory=model_factory(), cpu=True).losses
    second = run_training(cfg, tmp_path / "b", model_factory=model_factory(), cpu=True).losses
    assert len(first) == 20 and first == second
    other = tiny_config(
        records,
        tokens,
        **{"stages": [{"name": "main", "steps": 2, "lr": 1e-3}], "train.seed": 8, "train.checkpoint_every": 100},
    )
    assert run_training(other, tmp_path / "c", model_factory=model_factory(), cpu=True).losses != first[:2]
